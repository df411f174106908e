#!/usr/bin/env python3
"""Inputs/Outputs tables of a Terraform module's README, in terraform-docs' layout, between
`<!-- BEGIN_TF_DOCS -->` and `<!-- END_TF_DOCS -->`.

    tf_docs.py MODULE_DIR            rewrite MODULE_DIR/README.md's generated part
    tf_docs.py --check MODULE_DIR... exit 1 when a README is missing or out of date

terraform-docs is a Go binary outside this machine's registries; the kit's variables and
outputs are written in one regular style (`variable "x" {` … `}` at column 0, one-line
`description`, `type`, `default`), which this reads without a full HCL parser.
"""
import re
import sys
from pathlib import Path

BEGIN, END = "<!-- BEGIN_TF_DOCS -->", "<!-- END_TF_DOCS -->"


def blocks(text, kind):
    """(name, body) of each top-level `kind "name" {` block."""
    out = []
    for m in re.finditer(rf'(?m)^{kind} "([^"]+)" \{{\n(.*?)^\}}', text, re.S):
        out.append((m.group(1), m.group(2)))
    return out


def attr(body, key):
    """A top-level attribute of a block body (2-space indent), multi-line values joined."""
    m = re.search(rf'(?m)^  {key}\s*=\s*(.*)$', body)
    if not m:
        return None
    value = m.group(1).strip()
    if value.endswith(("({", "{", "[", "(")):
        # a multi-line value: take lines until the indentation returns to two spaces
        rest = body[m.end():].split("\n")
        parts = [value]
        for line in rest[1:]:
            if re.match(r"^  \S", line):
                break
            parts.append(line.strip())
        value = re.sub(r"\s+", " ", " ".join(p for p in parts if p and not p.startswith("#")))
    return value


def cell(text):
    return (text or "").replace("|", "\\|").replace("\n", " ")


def render(module):
    variables, outputs = [], []
    for tf in sorted(module.glob("*.tf")):
        text = tf.read_text(encoding="utf-8")
        variables += blocks(text, "variable")
        outputs += blocks(text, "output")
    lines = ["## Inputs", "", "| Name | Description | Type | Default | Required |", "|------|-------------|------|---------|:--------:|"]
    for name, body in sorted(variables):
        desc = (attr(body, "description") or "").strip('"')
        typ = attr(body, "type") or "any"
        default = attr(body, "default")
        lines.append(f"| {name} | {cell(desc)} | `{cell(typ)}` | {'`' + cell(default) + '`' if default is not None else 'n/a'} | {'no' if default is not None else 'yes'} |")
    lines += ["", "## Outputs", "", "| Name | Description |", "|------|-------------|"]
    for name, body in sorted(outputs):
        lines.append(f"| {name} | {cell((attr(body, 'description') or '').strip(chr(34)))} |")
    return "\n".join(lines)


def updated(readme_text, generated):
    if BEGIN not in readme_text or END not in readme_text:
        return None
    head, rest = readme_text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{generated}\n{END}{tail}"


def main(argv):
    check = argv[:1] == ["--check"]
    modules = [Path(p) for p in (argv[1:] if check else argv)]
    stale = []
    for m in modules:
        readme = m / "README.md"
        if not readme.is_file():
            stale.append(f"{readme}: missing")
            continue
        text = readme.read_text(encoding="utf-8")
        new = updated(text, render(m))
        if new is None:
            stale.append(f"{readme}: no {BEGIN} … {END} section")
        elif new != text:
            if check:
                stale.append(f"{readme}: out of date (run scripts/lib/tf_docs.py {m})")
            else:
                readme.write_text(new, encoding="utf-8")
    for s in stale:
        print(f"tf docs: {s}", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
