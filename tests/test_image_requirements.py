"""The image's pinned dependencies (deploy/requirements-serve.txt) against the project's (pyproject.toml): a
dependency added to one and not the other would make the image differ from a pip install, or fail in it."""

import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

pytestmark = pytest.mark.fast
ROOT = Path(__file__).resolve().parent.parent


def pins() -> dict[str, tuple[Requirement, str]]:
    """{name: (the pin, its comment)} for each line of the image's requirements file."""
    found = {}
    for line in (ROOT / "deploy" / "requirements-serve.txt").read_text().splitlines():
        text, _, comment = line.partition("#")
        if text.strip():
            requirement = Requirement(text.strip())
            found[canonicalize_name(requirement.name)] = (requirement, comment.strip())
    return found


def project_dependencies() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = (Requirement(text) for text in project["dependencies"])
    return {canonicalize_name(r.name): r for r in requirements if r.name != "torch"}  # the Dockerfile installs torch


def test_every_dependency_is_pinned_inside_its_range_with_its_marker():
    pinned = pins()
    for name, wanted in project_dependencies().items():
        assert name in pinned, f"{name} is a dependency of the project but not pinned for the image"
        pin, _ = pinned[name]
        (specifier,) = pin.specifier
        assert specifier.operator == "==", f"{name}: the image pins exact versions, not {pin}"
        assert wanted.specifier.contains(specifier.version), f"{name} {specifier.version} is outside {wanted.specifier}"
        assert str(pin.marker) == str(wanted.marker), f"{name}: the image's marker {pin.marker} is not {wanted.marker}"


def test_every_other_pin_says_which_dependency_it_is_for():
    dependencies = project_dependencies()
    for name, (_, comment) in pins().items():
        if name not in dependencies:
            assert comment.startswith("for "), (
                f"{name} is pinned for the image but is no dependency, and no comment says why"
            )
            named = {canonicalize_name(word.strip(",:")) for word in comment.removeprefix("for ").split()}
            assert named & dependencies.keys(), f"{name}'s comment names no dependency of the project: {comment!r}"
