"""calculator-lab: the INSA/LAAS cloud-hypervisors lab's calculator, deployed by Pulumi.

All logic lives in `lab/` and `components/`; see README.md.
"""

from targets.stack import main

main()
