"""Read a retention policy file (YAML) into `Policies`, every error naming its line."""

from __future__ import annotations

from pathlib import Path

from regtool.model.policy import Located, Policies, PolicyError, parse_policies

MAX_POLICY_BYTES = 1 << 20


def load_policies(path: Path) -> Policies:
    """Parse `path`; PolicyError (exit 2) for a file that is missing, not YAML, or wrong."""
    source = path.name
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_POLICY_BYTES + 1)
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read the policy file: {exc.strerror}") from None
    if len(raw) > MAX_POLICY_BYTES:
        raise PolicyError(f"{source}: larger than {MAX_POLICY_BYTES} bytes: not a policy file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(f"{source}: not UTF-8 text ({exc.reason})") from None
    return parse_policies(compose(text, source), source)


def compose(text: str, source: str) -> Located:
    """The YAML document as a `Located` tree (scalars typed as yaml's safe loader types
    them); PolicyError naming the line for YAML that does not parse or is not plain data."""
    import yaml
    from yaml.constructor import SafeConstructor

    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise PolicyError(f"{source}:{line}: not valid YAML: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise PolicyError(f"{source}: not valid YAML: {exc}") from None
    if node is None:
        raise PolicyError(f"{source}:1: the policy file is empty")
    constructor = SafeConstructor()

    def convert(item: yaml.Node, depth: int) -> Located:
        line = item.start_mark.line + 1
        if depth > 32:
            raise PolicyError(f"{source}:{line}: nested too deep for a policy file")
        if isinstance(item, yaml.MappingNode):
            found: dict[str, Located] = {}
            for key, value in item.value:
                if not isinstance(key, yaml.ScalarNode):
                    raise PolicyError(f"{source}:{key.start_mark.line + 1}: keys must be text")
                name = str(key.value)
                if name in found:
                    raise PolicyError(f"{source}:{key.start_mark.line + 1}: duplicate key {name!r}")
                found[name] = convert(value, depth + 1)
            return Located(found, line)
        if isinstance(item, yaml.SequenceNode):
            return Located([convert(child, depth + 1) for child in item.value], line)
        try:
            return Located(constructor.construct_object(item, deep=True), line)
        except yaml.YAMLError as exc:
            raise PolicyError(f"{source}:{line}: {exc}") from None

    return convert(node, 0)
