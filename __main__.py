"""calculator-lab: the INSA/LAAS cloud-hypervisors lab's calculator, deployed by Pulumi.

The program is `targets/`: read the stack's config once, validate it (`lab/`), check the cloud
(`preflight/`), and hand the chosen target's specs to `components/`. See README.md, "Layout".
"""

from targets.stack import main

main()
