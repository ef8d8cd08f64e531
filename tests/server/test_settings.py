"""regtool.server.settings: what serve takes from config.yml, what it refuses, what it ignores."""

from __future__ import annotations

from pathlib import Path

import pytest

from regtool.errors import UsageError
from regtool.layout.detect import load_config
from regtool.server.settings import ServeSettings, serve_settings

# what Debian's docker-registry package installs as /etc/docker/registry/config.yml
DEBIAN_CONFIG = """\
version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/docker-registry
  delete:
    enabled: true
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
auth:
  htpasswd:
    realm: basic-realm
    path: /etc/docker/registry
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
"""
STORAGE = "storage:\n  filesystem:\n    rootdirectory: reg\n"


def settings_of(tmp_path: Path, text: str) -> ServeSettings:
    config = tmp_path / "config.yml"
    config.write_text(text)
    return serve_settings(load_config(config))


def refusal(tmp_path: Path, text: str) -> str:
    with pytest.raises(UsageError) as caught:
        settings_of(tmp_path, text)
    return caught.value.message


def test_debian_config_is_honoured_and_its_health_checks_reported_as_ignored(
    tmp_path: Path,
) -> None:
    settings = settings_of(tmp_path, DEBIAN_CONFIG)
    assert settings.root == Path("/var/lib/docker-registry")
    assert settings.addr == ":5000"
    assert settings.htpasswd == Path("/etc/docker/registry")
    assert settings.realm == "basic-realm"
    assert settings.delete is True
    assert settings.headers == (("X-Content-Type-Options", "nosniff"),)
    assert settings.ignored == ("health",)


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ("auth:\n  token:\n    realm: https://auth.example/token\n", "auth.token"),
        ("auth:\n  silly:\n    realm: silly\n    service: silly\n", "auth.silly"),
        ("auth:\n  ldap:\n    url: ldap://x\n", "auth.ldap"),
        ("auth:\n  htpasswd:\n    path: users\n  token:\n    realm: x\n", "auth.token"),
    ],
)
def test_auth_other_than_htpasswd_is_refused_naming_it(
    tmp_path: Path, section: str, key: str
) -> None:
    message = refusal(tmp_path, STORAGE + section)
    assert f": {key}: not supported by regtool serve" in message
    assert "without the authentication" in message


def test_htpasswd_without_a_path_is_refused(tmp_path: Path) -> None:
    assert "auth.htpasswd.path" in refusal(tmp_path, STORAGE + "auth:\n  htpasswd:\n    realm: r\n")


def test_htpasswd_path_and_tls_files_are_relative_to_the_config_file(tmp_path: Path) -> None:
    settings = settings_of(
        tmp_path,
        STORAGE
        + "auth:\n  htpasswd:\n    path: users\n"
        + "http:\n  tls:\n    certificate: s.crt\n    key: s.key\n",
    )
    assert settings.htpasswd == tmp_path / "users"
    assert (settings.cert, settings.key) == (tmp_path / "s.crt", tmp_path / "s.key")


@pytest.mark.parametrize(
    "tls",
    [
        "clientcas: [/etc/ca.pem]",
        "letsencrypt:\n      cachefile: /var/cache/le\n      email: a@example.org",
        "ciphersuites: [TLS_AES_128_GCM_SHA256]",
    ],
)
def test_tls_keys_serve_cannot_use_are_refused_naming_them(tmp_path: Path, tls: str) -> None:
    message = refusal(tmp_path, STORAGE + "http:\n  tls:\n    " + tls + "\n")
    assert f"http.tls.{tls.split(':')[0]}: not supported" in message


def test_tls_minimum_version_1_3_is_honoured_and_1_0_refused(tmp_path: Path) -> None:
    tls = "http:\n  tls:\n    certificate: s.crt\n    key: s.key\n    minimumtls: "
    assert settings_of(tmp_path, STORAGE + tls + "tls1.3\n").minimum_tls == "tls1.3"
    assert "http.tls.minimumtls" in refusal(tmp_path, STORAGE + tls + "tls1.0\n")


def test_tls_certificate_without_key_is_refused(tmp_path: Path) -> None:
    message = refusal(tmp_path, STORAGE + "http:\n  tls:\n    certificate: s.crt\n")
    assert "certificate and key go together" in message


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("  s3:\n    bucket: b\n", "storage.s3"),
        ("  inmemory: {}\n", "storage.inmemory"),
    ],
)
def test_a_second_storage_driver_is_refused_naming_it(tmp_path: Path, text: str, key: str) -> None:
    message = refusal(tmp_path, STORAGE + text)
    assert f"names 2 storage drivers (filesystem, {key.split('.')[1]})" in message


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ("proxy:\n  remoteurl: https://registry-1.docker.io\n", "proxy"),
        (
            "notifications:\n  endpoints:\n    - name: audit\n      url: http://x/\n",
            "notifications",
        ),
        ("validation:\n  manifests:\n    urls:\n      allow: ['^https://']\n", "validation"),
        ("http:\n  net: unix\n  addr: /run/registry.sock\n", "http.net"),
        ("http:\n  prefix: /registry/\n", "http.prefix"),
        ("policy:\n  repository:\n    classes: [image]\n", "policy"),
        ("regtool:\n  maxconections: 5\n", "regtool.maxconections"),
        ("regtool:\n  maxconnections: 0\n", "regtool.maxconnections"),
        ("regtool:\n  idletimeout: soon\n", "regtool.idletimeout"),
    ],
)
def test_settings_that_cannot_be_honoured_are_refused(
    tmp_path: Path, section: str, key: str
) -> None:
    assert f": {key}" in refusal(tmp_path, STORAGE + section)


def test_disabled_notification_endpoints_are_fine(tmp_path: Path) -> None:
    text = (
        "notifications:\n  endpoints:\n    - name: a\n      url: http://x/\n      disabled: true\n"
    )
    assert settings_of(tmp_path, STORAGE + text).ignored == ()


def test_keys_that_only_tune_distribution_are_reported_as_ignored(tmp_path: Path) -> None:
    settings = settings_of(
        tmp_path,
        STORAGE
        + "  redirect:\n    disable: true\n"
        + "  maintenance:\n    uploadpurging:\n      enabled: false\n"
        + "http:\n  addr: :5000\n  host: https://r.example\n  secret: s3cret\n"
        + "  relativeurls: true\n  debug:\n    addr: :5001\n"
        + "redis:\n  addr: localhost:6379\n"
        + "middleware:\n  storage:\n    - name: cloudfront\n"
        + "someday: 1\n",
    )
    assert settings.ignored == (
        "redis",
        "middleware",
        "someday",
        "storage.redirect",
        "http.host",
        "http.debug",
    )


def test_deletes_follow_storage_delete_enabled_and_default_to_off(tmp_path: Path) -> None:
    assert settings_of(tmp_path, STORAGE).delete is False
    assert settings_of(tmp_path, STORAGE + "  delete:\n    enabled: false\n").delete is False
    assert settings_of(tmp_path, STORAGE + "  delete:\n    enabled: true\n").delete is True


@pytest.mark.parametrize(
    ("value", "seconds"), [("30", 30.0), ("90s", 90.0), ("2m", 120.0), ("500ms", 0.5), ("1.5", 1.5)]
)
def test_regtool_section_sets_connection_limits(tmp_path: Path, value: str, seconds: float) -> None:
    settings = settings_of(
        tmp_path, STORAGE + f"regtool:\n  maxconnections: 64\n  idletimeout: {value}\n"
    )
    assert (settings.max_connections, settings.idle_timeout) == (64, seconds)


def test_header_values_with_line_breaks_are_refused(tmp_path: Path) -> None:
    text = 'http:\n  headers:\n    X-A: ["1\\r\\nSet-Cookie: x"]\n'
    assert "http.headers.X-A" in refusal(tmp_path, STORAGE + text)


def test_regtool_gc_metrics_and_log_settings_are_read(tmp_path: Path) -> None:
    settings = settings_of(
        tmp_path,
        STORAGE
        + "  maintenance:\n    uploadpurging:\n      enabled: false\n      age: 48h\n"
        + "      interval: 1h30m\n      dryrun: true\n"
        + "regtool:\n  gc:\n    interval: 6h\n    grace: 30m\n    deleteuntagged: true\n"
        + "    uploadage: 2h\n  metricsaddr: 127.0.0.1:9102\n  logformat: JSON\n",
    )
    assert (settings.gc.interval, settings.gc.grace, settings.gc.upload_age) == (
        21600.0,
        1800.0,
        7200.0,
    )
    assert settings.gc.delete_untagged is True
    assert settings.purge.enabled is False and settings.purge.dry_run is True
    assert (settings.purge.age, settings.purge.interval) == (172800.0, 5400.0)
    assert settings.metrics_addr == "127.0.0.1:9102" and settings.log_format == "json"
    assert settings.ignored == ()


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("regtool:\n  gc:\n    every: 1h\n", "regtool.gc.every: unknown key"),
        ("regtool:\n  gc:\n    interval: soon\n", "regtool.gc.interval: 'soon' is not a duration"),
        ("regtool:\n  gc:\n    interval: 0\n", "regtool.gc.interval: must be longer than 0"),
        ("regtool:\n  logformat: xml\n", "regtool.logformat: 'xml'"),
        (
            "  maintenance:\n    uploadpurging:\n      age: true\n",
            "storage.maintenance.uploadpurging.age: True is not a duration",
        ),
        (
            "  maintenance:\n    uploadpurging:\n      often: 1h\n",
            "storage.maintenance.uploadpurging.often: unknown key",
        ),
    ],
)
def test_bad_operations_settings_are_refused_naming_the_key(
    tmp_path: Path, text: str, key: str
) -> None:
    assert key in refusal(tmp_path, STORAGE + text)
