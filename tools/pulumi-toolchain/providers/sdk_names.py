"""Reads a generated Pulumi Python SDK (pulumi_openstack, pulumi_docker) for the facts a bridged
provider must agree with, and checks a provider against them.

`tokens PKG`: prints the SDK's resource and function tokens as JSON (the providers embed this as
sdk-tokens.json to map Terraform names onto the SDK's tokens).

`check PKG DUMP [--require TOKEN]...`: compares the property names a provider derives (the JSON
that `pulumi-resource-X -dump-names` prints) with the names, required inputs and list/object
shapes in the SDK's classes. Every mismatch is printed; the exit status is 1 when a required
token (default: every mapped token) has one, or is not mapped at all.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESOURCE_INIT = re.compile(r"super\((\w+), __self__\)\.__init__\(\s*'([^']+)'")
INVOKE = re.compile(r"pulumi\.runtime\.invoke\('([^']+)', __args__, opts=opts, typ=(\w+)")
QUOTED_CLASS = re.compile(r"'(\w+)'")


def sdk_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise SystemExit(f"sdk_names: Python package {package} is not installed")
    return Path(spec.origin).parent


def sdk_version(root: Path) -> str:
    plugin = json.loads((root / "pulumi-plugin.json").read_text())
    return str(plugin["version"])


def collect_tokens(root: Path) -> dict[str, Any]:
    resources: set[str] = set()
    functions: set[str] = set()
    for path in sorted(root.rglob("*.py")):
        text = path.read_text()
        # The Provider class registers the bare package name; it is no Terraform entity.
        resources.update(tok for _, tok in RESOURCE_INIT.findall(text) if tok.count(":") == 2)
        functions.update(tok for tok, _ in INVOKE.findall(text))
    return {
        "package": root.name.removeprefix("pulumi_"),
        "version": sdk_version(root),
        "resources": sorted(resources),
        "functions": sorted(functions),
    }


@dataclass
class Prop:
    """One property of an SDK class: its wire name and what its annotation says of its shape."""

    name: str
    required: bool
    is_list: bool
    is_map: bool
    type_ref: str | None


@dataclass
class SDKClass:
    props: dict[str, Prop] = field(default_factory=dict)


def _getter_name(node: ast.FunctionDef) -> str | None:
    for dec in node.decorator_list:
        if isinstance(dec, ast.Attribute) and dec.attr == "getter":
            return node.name
        if isinstance(dec, ast.Call) and isinstance(dec.func, ast.Attribute):
            if dec.func.attr != "getter":
                continue
            for kw in dec.keywords:
                if kw.arg == "name" and isinstance(kw.value, ast.Constant):
                    return str(kw.value.value)
            return node.name
    return None


def _required_params(cls: ast.ClassDef) -> set[str] | None:
    """Keyword-only parameters of __init__ without a default; None when there is no __init__."""
    for node in cls.body:
        if isinstance(node, ast.FunctionDef) and node.name == "__init__":
            args = node.args
            return {
                a.arg for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is None
            }
    return None


def parse_classes(root: Path) -> dict[str, SDKClass]:
    """Every class with pulumi getters, keyed by module-relative dotted path and class name."""
    classes: dict[str, SDKClass] = {}
    for path in sorted(root.rglob("*.py")):
        module = path.parent.relative_to(root).as_posix()
        tree = ast.parse(path.read_text())
        for cls in tree.body:
            if not isinstance(cls, ast.ClassDef):
                continue
            required = _required_params(cls) or set()
            sdk_class = SDKClass()
            for node in cls.body:
                if not isinstance(node, ast.FunctionDef):
                    continue
                wire = _getter_name(node)
                if wire is None or node.returns is None:
                    continue
                annotation = ast.unparse(node.returns)
                refs = QUOTED_CLASS.findall(annotation)
                sdk_class.props[wire] = Prop(
                    name=wire,
                    required=node.name in required,
                    is_list="Sequence[" in annotation,
                    is_map="Mapping[" in annotation,
                    type_ref=refs[0] if refs else None,
                )
            if sdk_class.props:
                classes[f"{module}:{cls.name}"] = sdk_class
    return classes


@dataclass
class Checker:
    classes: dict[str, SDKClass]
    subject: str = ""  # the token whose problems are being collected
    problems: list[tuple[str, str]] = field(default_factory=list)

    def problem(self, message: str) -> None:
        self.problems.append((self.subject, message))

    def lookup(self, module: str, name: str) -> SDKClass | None:
        return self.classes.get(f"{module}:{name}")

    def compare(
        self,
        where: str,
        module: str,
        sdk: SDKClass,
        ours: dict[str, Any],
        inputs: bool,
        top: bool = True,
    ) -> None:
        for prop in sdk.props.values():
            mine = ours.get(prop.name)
            if mine is None:
                self.problem(f"{where}: SDK property {prop.name!r} is unknown to the provider")
                continue
            # Nested types serve as inputs and outputs alike, so their computed fields show up in
            # the SDK's input classes too; only top-level inputs must be settable.
            if inputs and top and not mine["input"]:
                self.problem(f"{where}: SDK input {prop.name!r} is output-only in the provider")
            if inputs and mine["required"] and not prop.required:
                self.problem(
                    f"{where}: {prop.name!r} is optional in the SDK but required by the provider"
                )
            if prop.is_list != (mine["kind"] == "list"):
                self.problem(
                    f"{where}: {prop.name!r} is {'a list' if prop.is_list else 'not a list'} "
                    f"in the SDK but {mine['kind']} in the provider"
                )
            if prop.type_ref and mine.get("fields") and not prop.is_map:
                nested = self.lookup(module, prop.type_ref)
                if nested is None:
                    self.problem(f"{where}: SDK type {prop.type_ref} not found")
                else:
                    self.compare(
                        f"{where}.{prop.name}", module, nested, mine["fields"], inputs, top=False
                    )
        if inputs:
            for name, mine in ours.items():
                if mine["required"] and name not in sdk.props:
                    self.problem(
                        f"{where}: the provider requires {name!r}, which the SDK cannot send"
                    )


def token_parts(token: str) -> tuple[str, str]:
    """The SDK directory and class name of a token such as openstack:networking/port:Port."""
    _, mod, name = token.split(":")
    directory = mod.split("/")[0]
    return ("." if directory == "index" else directory), name


def check(root: Path, dump: dict[str, Any], required: list[str]) -> int:
    checker = Checker(parse_classes(root))
    for token, entity in sorted(dump["resources"].items()):
        checker.subject = token
        module, name = token_parts(token)
        for suffix, inputs in (("Args", True), ("", False)):
            sdk = checker.lookup(module, name + suffix)
            if sdk is None:
                checker.problem(f"{token}: SDK class {name + suffix} not found")
            else:
                kind = "inputs" if inputs else "outputs"
                checker.compare(f"{token} ({kind})", module, sdk, entity["fields"], inputs)
    for token, entity in sorted(dump["functions"].items()):
        checker.subject = token
        module, name = token_parts(token)
        result = checker.lookup(module, name[0].upper() + name[1:] + "Result")
        if result is None:
            checker.problem(f"{token}: SDK result class not found")
            continue
        # The bridge adds the Terraform id to every data source's result.
        fields = {"id": {"input": False, "required": False, "kind": "scalar"}} | entity["fields"]
        checker.compare(f"{token} (result)", module, result, fields, False)
    checker.subject = "provider"
    provider_args = checker.lookup(".", "ProviderArgs")
    if provider_args is None:
        checker.problem("provider: SDK class ProviderArgs not found")
    else:
        checker.compare("provider (config)", ".", provider_args, dump["config"], True)
    mapped = set(dump["resources"]) | set(dump["functions"]) | {"provider"}
    must = set(required) if required else mapped
    failures = 0
    for token, message in checker.problems:
        failures += token in must
        print(("FAIL " if token in must else "note ") + message)
    for token in sorted(must - mapped):
        failures += 1
        print(f"FAIL {token}: not mapped by the provider")
    print(
        f"sdk_names: {len(dump['resources'])} resources and "
        f"{len(dump['functions'])} functions mapped, "
        f"{len(dump.get('unmapped') or [])} Terraform entities unmapped; "
        f"{len(checker.problems)} mismatches; {failures} failures"
    )
    return 1 if failures else 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    tok = sub.add_parser("tokens")
    tok.add_argument("package")
    chk = sub.add_parser("check")
    chk.add_argument("package")
    chk.add_argument("dump", type=Path)
    chk.add_argument("--require", action="append", default=[])
    args = parser.parse_args(argv)
    root = sdk_dir(args.package)
    if args.command == "tokens":
        json.dump(collect_tokens(root), sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    return check(root, json.loads(args.dump.read_text()), args.require)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
