"""Names that end up in paths or database keys, checked so they cannot escape a folder."""

import re

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def check_safe_name(name: str, what: str) -> str:
    """Refuse names like `../x` or `a/b`; return the name when it is safe."""
    if not isinstance(name, str) or not SAFE_NAME.match(name):
        raise ValueError(f"{what}={name!r} is not allowed: use 1-64 letters, digits, '_' or '-', starting with a letter or digit.")
    return name
