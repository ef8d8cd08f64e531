#!/usr/bin/env python3
"""Build ``tests/fixtures/v2``: a distribution storage root written by the reference registry.

Steps: build one OCI image layout (pure Python, deterministic) holding the
image family of the v1 fixture plus a two-platform index; start the Debian
``docker-registry`` 2.8.2 on 127.0.0.1 with a temporary root; push every image
with ``skopeo copy`` (Docker schema2 or OCI, as the table ``PUSHES`` says);
push one OCI 1.1 artifact by digest through the HTTP API; read back what the
registry's API reports into ``EXPECTED.json``; stop it and copy the root.

Needs ``docker-registry`` and ``skopeo`` on PATH.  Takes ``--out DIR``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

from _fixturelib import (
    ALL_MANIFEST_TYPES,
    CHAINS,
    MT_OCI_CONFIG,
    MT_OCI_EMPTY,
    MT_OCI_INDEX,
    MT_OCI_LAYER,
    MT_OCI_MANIFEST,
    STEP_BY_KEY,
    OciLayout,
    RunningRegistry,
    build_layer,
    compact_json,
    created_str,
    descriptor,
    digest,
    http_request,
    run_registry,
)

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "v2"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
ARTIFACT_TYPE = "application/vnd.example.sbom.v1+json"
ARTIFACT_REPO = "sshd"
ARTIFACT_SUBJECT_TAG = "latest"
PREVIOUS_BUSYBOX = "busybox-previous"

# (layout ref, skopeo mode, destination name:tag), pushed in this order.  The
# first busybox push is overwritten by the last one and stays as an untagged
# revision.  Mode "all" copies the whole OCI index (skopeo --all).
PUSHES: tuple[tuple[str, str, str], ...] = (
    (PREVIOUS_BUSYBOX, "v2s2", "busybox:latest"),
    ("centos-6.7", "v2s2", "centos:6.7"),
    ("centos-httpd", "v2s2", "centos:httpd"),
    ("gjkdhr-centos-httpd", "oci", "gjkdhr/centos:httpd"),
    ("centos6", "oci", "centos6:latest"),
    ("sshd", "v2s2", "sshd:latest"),
    ("multi", "all", "multi:latest"),
    ("busybox", "v2s2", "busybox:latest"),
)
MULTI_PLATFORMS = ("multi-amd64", "multi-arm64")


# ---------------------------------------------------------------------------
# (a) the OCI layout


def image_config(chain: str) -> bytes:
    steps = [STEP_BY_KEY[key] for key in CHAINS[chain]]
    layers = [build_layer(key) for key in CHAINS[chain]]
    top = steps[-1]
    config: dict[str, object] = {"created": created_str(top), "architecture": top.arch}
    if top.arch == "arm64":
        config["variant"] = "v8"
    config["os"] = "linux"
    config["config"] = {"Env": [PATH_ENV], "Cmd": list(top.cmd or ())}
    config["rootfs"] = {
        "type": "layers",
        "diff_ids": [layer.diff_id for layer in layers if not layer.empty],
    }
    history = []
    for step, layer in zip(steps, layers, strict=True):
        entry: dict[str, object] = {"created": created_str(step), "created_by": step.created_by}
        if layer.empty:
            entry["empty_layer"] = True
        history.append(entry)
    config["history"] = history
    return compact_json(config)


def add_image(layout: OciLayout, chain: str) -> dict[str, object]:
    """Store config, layers and manifest of one chain; return the manifest descriptor."""
    config = image_config(chain)
    layout.add_blob(config)
    layers = [build_layer(key) for key in CHAINS[chain]]
    for layer in layers:
        if not layer.empty:
            layout.add_blob(layer.gz)
    manifest = compact_json(
        {
            "schemaVersion": 2,
            "mediaType": MT_OCI_MANIFEST,
            "config": descriptor(MT_OCI_CONFIG, config),
            "layers": [descriptor(MT_OCI_LAYER, layer.gz) for layer in layers if not layer.empty],
        }
    )
    layout.add_blob(manifest)
    return descriptor(MT_OCI_MANIFEST, manifest)


def platform(chain: str) -> dict[str, str]:
    step = STEP_BY_KEY[CHAINS[chain][-1]]
    result = {"architecture": step.arch, "os": "linux"}
    if step.arch == "arm64":
        result["variant"] = "v8"
    return result


def build_layout(root: Path) -> OciLayout:
    layout = OciLayout(root)
    for ref, mode, _ in PUSHES:
        if mode != "all":
            layout.tag(ref, add_image(layout, ref))
    children = [
        {**add_image(layout, chain), "platform": platform(chain)} for chain in MULTI_PLATFORMS
    ]
    index = compact_json({"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": children})
    layout.add_blob(index)
    layout.tag("multi", descriptor(MT_OCI_INDEX, index))
    return layout


# ---------------------------------------------------------------------------
# (c)-(e) pushing


def skopeo_push(reg: RunningRegistry, layout: Path, ref: str, mode: str, dest: str) -> None:
    flags = ["--all"] if mode == "all" else ["--format", mode]
    cmd = [
        "skopeo",
        "--insecure-policy",
        "copy",
        "--quiet",
        "--retry-times",
        "0",
        "--dest-tls-verify=false",
        *flags,
        f"oci:{layout}:{ref}",
        f"docker://{reg.host}/{dest}",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout}{done.stderr}")


def get_manifest(reg: RunningRegistry, repo: str, ref: str) -> tuple[str, str, bytes]:
    """(digest, media type, body) as the registry reports them."""
    status, body, headers = http_request(
        "GET",
        f"{reg.url}/v2/{repo}/manifests/{ref}",
        headers={"Accept": ", ".join(ALL_MANIFEST_TYPES)},
    )
    if status != 200:
        raise RuntimeError(f"GET manifest {repo}:{ref} -> {status}: {body!r}")
    reported = headers["Docker-Content-Digest"]
    if reported != digest(body):
        raise RuntimeError(f"{repo}:{ref}: Docker-Content-Digest {reported} != body digest")
    return reported, headers.get_content_type(), body


def push_blob(reg: RunningRegistry, repo: str, data: bytes) -> None:
    status, body, headers = http_request("POST", f"{reg.url}/v2/{repo}/blobs/uploads/")
    if status != 202:
        raise RuntimeError(f"POST upload in {repo} -> {status}: {body!r}")
    location = urllib.parse.urljoin(reg.url, headers["Location"])
    sep = "&" if "?" in location else "?"
    url = f"{location}{sep}digest={urllib.parse.quote(digest(data))}"
    status, body, _ = http_request(
        "PUT", url, data=data, headers={"Content-Type": "application/octet-stream"}
    )
    if status != 201:
        raise RuntimeError(f"PUT blob in {repo} -> {status}: {body!r}")


def artifact_manifest(subject: dict[str, object], sbom: bytes) -> bytes:
    layer = descriptor(
        "application/spdx+json",
        sbom,
        annotations={"org.opencontainers.image.title": "sshd.spdx.json"},
    )
    return compact_json(
        {
            "schemaVersion": 2,
            "mediaType": MT_OCI_MANIFEST,
            "artifactType": ARTIFACT_TYPE,
            "config": descriptor(MT_OCI_EMPTY, b"{}"),
            "layers": [layer],
            "subject": subject,
            "annotations": {"org.opencontainers.image.created": "2015-11-01T12:00:00Z"},
        }
    )


def push_artifact(reg: RunningRegistry) -> dict[str, object]:
    """Push an untagged OCI 1.1 artifact whose subject is sshd:latest, by digest."""
    subject_digest, subject_type, subject_body = get_manifest(
        reg, ARTIFACT_REPO, ARTIFACT_SUBJECT_TAG
    )
    subject = {"mediaType": subject_type, "digest": subject_digest, "size": len(subject_body)}
    sbom = compact_json(
        {
            "spdxVersion": "SPDX-2.3",
            "name": "sshd",
            "packages": [{"name": "openssh-server", "versionInfo": "5.3p1-111.el6"}],
        }
    )
    push_blob(reg, ARTIFACT_REPO, b"{}")
    push_blob(reg, ARTIFACT_REPO, sbom)
    manifest = artifact_manifest(subject, sbom)
    status, body, headers = http_request(
        "PUT",
        f"{reg.url}/v2/{ARTIFACT_REPO}/manifests/{digest(manifest)}",
        data=manifest,
        headers={"Content-Type": MT_OCI_MANIFEST},
    )
    if status != 201:
        raise RuntimeError(f"PUT artifact manifest -> {status}: {body!r}")
    referrers = http_request("GET", f"{reg.url}/v2/{ARTIFACT_REPO}/referrers/{subject_digest}")[0]
    return {
        "repository": ARTIFACT_REPO,
        "digest": headers["Docker-Content-Digest"],
        "artifact_type": ARTIFACT_TYPE,
        "subject": subject,
        "subject_tag": ARTIFACT_SUBJECT_TAG,
        "oci_subject_header": headers.get("OCI-Subject"),
        "referrers_api_status": referrers,
    }


# ---------------------------------------------------------------------------
# (e) what the API reports


def describe(reg: RunningRegistry, repo: str, ref: str) -> dict[str, object]:
    found, media_type, body = get_manifest(reg, repo, ref)
    doc = json.loads(body)
    info: dict[str, object] = {"digest": found, "media_type": media_type, "size": len(body)}
    if "manifests" in doc:
        info["manifests"] = [
            {"digest": m["digest"], "media_type": m["mediaType"], "platform": m.get("platform")}
            for m in doc["manifests"]
        ]
    else:
        info["config"] = doc["config"]["digest"]
        info["layers"] = [layer["digest"] for layer in doc["layers"]]
    return info


def collect_expected(reg: RunningRegistry, previous: str, artifact: dict) -> dict[str, object]:
    status, body, _ = http_request("GET", f"{reg.url}/v2/_catalog")
    catalog = json.loads(body)["repositories"]
    tags: dict[str, list[str]] = {}
    manifests: dict[str, dict[str, object]] = {}
    for repo in catalog:
        status, body, _ = http_request("GET", f"{reg.url}/v2/{repo}/tags/list")
        tags[repo] = sorted(json.loads(body)["tags"] or [])
        for tag in tags[repo]:
            manifests[f"{repo}:{tag}"] = describe(reg, repo, tag)
    return {
        "registry": "docker-registry 2.8.2 (Debian)",
        "catalog": catalog,
        "tags": tags,
        "manifests": manifests,
        "untagged": {
            "busybox": [describe(reg, "busybox", previous)],
            ARTIFACT_REPO: [describe(reg, ARTIFACT_REPO, str(artifact["digest"]))],
        },
        "artifact": artifact,
    }


# ---------------------------------------------------------------------------
# driver


def upload_leftovers(root: Path) -> list[Path]:
    return sorted(p for up in root.rglob("_uploads") if up.is_dir() for p in up.iterdir())


def run(out: Path, work: Path) -> dict[str, object]:
    layout_dir, root = work / "layout", work / "root"
    build_layout(layout_dir)
    with run_registry(root, work) as reg:
        previous = ""
        for ref, mode, dest in PUSHES:
            skopeo_push(reg, layout_dir, ref, mode, dest)
            if ref == PREVIOUS_BUSYBOX:
                previous = get_manifest(reg, *dest.split(":"))[0]
        artifact = push_artifact(reg)
        result = collect_expected(reg, previous, artifact)
    leftovers = upload_leftovers(root)
    for path in leftovers:
        print(f"warning: registry left an upload behind, removing {path}", file=sys.stderr)
        shutil.rmtree(path)
    result["upload_leftovers_removed"] = len(leftovers)
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(root, out)
    (out / "EXPECTED.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output dir (wiped)")
    args = parser.parse_args(argv)
    for tool in ("docker-registry", "skopeo"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} not found on PATH")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mkfixtures-v2-") as tmp:
        result = run(args.out.resolve(), Path(tmp))
    took = time.monotonic() - started
    print(
        f"wrote {args.out}: {len(result['manifests'])} tags in {len(result['catalog'])} "
        f"repositories, {took:.1f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
