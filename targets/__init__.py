"""The program's targets: read the stack's config once, validate it with the model (`lab/`), and
translate the model into components (`components/`) on OpenStack or Docker."""
