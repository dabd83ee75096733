"""The instructor's console (`lab class ...`): a class roster's stacks deployed, checked and
torn down together, in parallel, through Pulumi's Automation API, with a quota preflight
before anything is created. See docs/class.md.

Register with `app.add_typer(class_app, name="class")` in labctl/cli.py.
"""

from labctl.classroom.commands import class_app

__all__ = ["class_app"]
