"""`lab image ...`: the guest image in Glance (`lab image upload`), one module a job, each
importing only those listed before it:

- `errors`: `ImageError`, the one error of them all;
- `local`: the file to upload: its hashes in one read, its qcow2 header's disk size;
- `properties`: what the image is tagged with (properties.json, options, Glance's value types);
- `plan`: what Glance holds (`GlanceImage`) and the pure decision: reuse, rename or replace;
- `glance`: the few Glance v2 calls, as the student, and its refusals as one line;
- `command`: the typer command and its steps, which imports `glance` only when it runs.

Register with `app.add_typer(image_app, name="image")` in labctl/cli.py.
"""

from labctl.image.command import image_app

__all__ = ["image_app"]
