"""The container image the Kubernetes export names: the Containerfile agrees with what the
exported CronJob expects, and `make image` builds it with docker or podman.

The image itself is not built here (no container daemon on the test machines); what can be
checked without one is: the build context holds every file the Containerfile copies, the
wheel step installs rolechain from the source tree, and the image's user, paths and
entrypoint are the ones the export's pod spec relies on."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

from rolechain.scheduler.deploy import default_image
from rolechain.scheduler.export import CONFIG_DIR, DEFAULT_STORE, IMAGE_UID

ROOT = Path(__file__).resolve().parents[2]


def instructions() -> list[tuple[str, str]]:
    """The Containerfile's instructions (continuation lines joined), comments dropped."""
    text = (ROOT / "Containerfile").read_text(encoding="utf-8")
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_containerfile_matches_the_kubernetes_export() -> None:
    steps = instructions()
    known = {"FROM", "WORKDIR", "COPY", "RUN", "USER", "VOLUME", "ENTRYPOINT", "CMD"}
    assert {word for word, _ in steps} <= known
    assert next(rest for word, rest in steps if word == "FROM").startswith("python:3.")
    # the exported pod runs as this uid and mounts the store's volume where the image has it
    assert ("USER", f"{IMAGE_UID}:{IMAGE_UID}") in steps
    store_dir = DEFAULT_STORE.rsplit("/", 1)[0]
    assert ("VOLUME", json.dumps([store_dir])) in steps
    run = " ".join(rest for word, rest in steps if word == "RUN")
    assert f"--uid {IMAGE_UID}" in run
    assert f"chown {IMAGE_UID}:{IMAGE_UID} {store_dir}" in run
    assert CONFIG_DIR in run
    # the export's container args start with 'run': rolechain is the entrypoint
    assert ("ENTRYPOINT", '["rolechain"]') in steps
    # rolechain is not on PyPI: the image installs the wheel built from this tree
    assert "pip wheel" in run
    assert "pip install --no-cache-dir /wheels/*.whl" in run
    assert "pip install rolechain" not in run


def test_build_context_holds_what_the_containerfile_copies() -> None:
    ignore = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    kept = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copied = []
    for word, rest in instructions():
        if word == "COPY" and not rest.startswith("--from="):
            copied += shlex.split(rest)[:-1]
    assert copied == ["pyproject.toml", "README.md", "src"]
    for source in copied:
        assert (ROOT / source).exists(), source
        assert source.rstrip("/") in kept, source
    # everything the wheel build reads is in the context: the readme and the package
    assert 'readme = "README.md"' in (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert (ROOT / "src" / "rolechain" / "__init__.py").exists()


def test_make_image_builds_the_tag_the_export_names() -> None:
    done = subprocess.run(
        ["make", "-n", "image", "ENGINE=podman"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert f"podman build --file Containerfile --tag {default_image()} ." in done.stdout
    done = subprocess.run(
        ["make", "-n", "image", "ENGINE=docker", "IMAGE=registry.example.com/rolechain:1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert (
        "docker build --file Containerfile --tag registry.example.com/rolechain:1 ." in done.stdout
    )
