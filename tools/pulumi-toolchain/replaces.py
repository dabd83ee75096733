"""Turns `go mod edit -json` output (stdin) into `go mod edit -replace=...` arguments.

Only replacements by published module versions are kept: a replacement by a local path points
into the provider's own git checkout, which a module download does not have.
"""

import json
import sys


def main() -> None:
    for replace in json.load(sys.stdin).get("Replace") or []:
        old, new = replace["Old"], replace["New"]
        if not new.get("Version"):
            continue
        old_spec = old["Path"] + (f"@{old['Version']}" if old.get("Version") else "")
        print(f"-replace={old_spec}={new['Path']}@{new['Version']}")


if __name__ == "__main__":
    main()
