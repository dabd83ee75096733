"""The `lab` command: one student's stack (up, preview, down, new, check) and, for instructors,
the whole class. Run it as `scripts/lab ...` (which prepares the virtualenv first) or
`.venv/bin/python -m labctl ...`.

It drives Pulumi (the CLI for one stack, the Automation API for a class) and reads stack files
with the program's own model (`lab.config`); it never imports the Pulumi program itself.
"""
