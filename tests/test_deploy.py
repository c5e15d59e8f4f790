"""The Pi deployment files: the installer's dry run, the systemd unit, the mosquitto ACL files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, requires_package

DEPLOY = ROOT / "deploy"


def test_installer_dry_run_prints_every_step_and_changes_nothing(tmp_path: Path) -> None:
    result = subprocess.run(["bash", str(DEPLOY / "install-pi.sh"), "--dry-run", "--with-mosquitto",
                             "--device-id", "pi-shed", "--prefix", str(tmp_path / "opt")],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    steps = [line[2:] for line in result.stdout.splitlines() if line.startswith("+ ")]
    expected = ["apt-get install -y python3-venv python3-picamera2 mosquitto mosquitto-clients",
                "useradd --system", f"python3 -m venv --system-site-packages {tmp_path}/opt/.venv",
                f"{tmp_path}/opt/.venv/bin/pip install {tmp_path}/opt[edge]", "/etc/edgepipe/agent.toml",
                'device_id = "pi-shed"', "/var/lib/edgepipe", "/etc/mosquitto/edgepipe.acl",
                "/etc/systemd/system/edgepipe.service", "systemctl enable --now edgepipe.service"]
    for fragment in expected:
        assert any(fragment in step for step in steps), fragment
    assert not (tmp_path / "opt").exists()  # a dry run does nothing


def test_installer_refuses_unknown_options() -> None:
    result = subprocess.run(["bash", str(DEPLOY / "install-pi.sh"), "--dry-rnu"], capture_output=True, text=True)
    assert result.returncode == 2 and "unknown option: --dry-rnu" in result.stderr


def test_unit_has_restart_user_and_hardening() -> None:
    unit = (DEPLOY / "edgepipe.service").read_text()
    for line in ("Restart=on-failure", "User=edgepipe", "NoNewPrivileges=yes", "ProtectSystem=strict",
                 "ProtectHome=yes", "StateDirectory=edgepipe", "ReadWritePaths=/var/lib/edgepipe",
                 "ExecStart=/opt/edgepipe/.venv/bin/python -m edge run --config /etc/edgepipe/agent.toml"):
        assert line in unit.splitlines(), line


@requires_package("systemd")
def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    # the venv exists only on a Pi: point the unit at this Python so verify can check the rest
    unit = tmp_path / "edgepipe.service"
    unit.write_text((DEPLOY / "edgepipe.service").read_text().replace("/opt/edgepipe/.venv/bin/python",
                                                                      sys.executable))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr


def test_mosquitto_example_needs_a_password_and_an_acl() -> None:
    conf = (DEPLOY / "mosquitto" / "edgepipe.conf").read_text().splitlines()
    assert "allow_anonymous false" in conf
    assert "password_file /etc/mosquitto/edgepipe.passwd" in conf and "acl_file /etc/mosquitto/edgepipe.acl" in conf
    acl = (DEPLOY / "mosquitto" / "edgepipe.acl").read_text().splitlines()
    assert "pattern write edgepipe/%u/#" in acl and not any(line.startswith("topic write #") for line in acl)
