"""The Pi deployment files: the installer (dry run, a real install into a temp root, and a real install
inside an emulated arm64 Debian image when one is cached), the systemd unit, the mosquitto files."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import ROOT, requires_package
from tests.helpers.mqtt import Broker, free_port

DEPLOY = ROOT / "deploy"
INSTALLER = DEPLOY / "install-pi.sh"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
MACHINE_ID = "3fa2c1d4e5b6a7980f1e2d3c4b5a6978"


def install(*args: str, root: Path | None = None) -> subprocess.CompletedProcess:
    extra = ["--root", str(root)] if root else []
    return subprocess.run(["bash", str(INSTALLER), *extra, *args], capture_output=True, text=True, timeout=600)


def steps(result: subprocess.CompletedProcess) -> list[str]:
    return [line[2:] for line in result.stdout.splitlines() if line.startswith("+ ")]


def fake_machine(root: Path, hostname: str = "raspberrypi", machine_id: str = MACHINE_ID) -> Path:
    """A root tree that says what a freshly flashed Pi says: the stock host name, its own machine id."""
    (root / "etc").mkdir(parents=True)
    (root / "etc/hostname").write_text(hostname + "\n")
    (root / "etc/machine-id").write_text(machine_id + "\n")
    return root


# --- options: checked before anything changes ------------------------------------------------
def test_installer_dry_run_prints_every_step_and_changes_nothing(tmp_path: Path) -> None:
    result = install("--dry-run", "--with-mosquitto", "--device-id", "pi-shed", "--prefix", "/srv/edgepipe")
    assert result.returncode == 0, result.stderr
    expected = ["apt-get install -y --no-install-recommends python3-venv python3-cryptography python3-picamera2 "
                "mosquitto mosquitto-clients",
                "useradd --system", "python3 -m venv --system-site-packages /srv/edgepipe/.venv",
                "/srv/edgepipe/.venv/bin/pip install --quiet /srv/edgepipe[edge]",
                "write_config /etc/edgepipe/agent.toml",
                "add_broker_user pi-shed /etc/mosquitto/edgepipe.passwd /etc/edgepipe/mqtt-password",
                "/etc/mosquitto/edgepipe.acl", "write_unit /etc/systemd/system/edgepipe.service", "systemctl enable"]
    for fragment in expected:
        assert any(fragment in step for step in steps(result)), fragment
    assert not Path("/srv/edgepipe").exists()  # a dry run does nothing


def test_installer_refuses_unknown_options() -> None:
    result = install("--dry-rnu")
    assert result.returncode == 2 and "unknown option: --dry-rnu" in result.stderr


def test_help_prints_usage_not_the_script() -> None:
    result = install("--help")
    assert result.returncode == 0 and result.stdout.startswith("Usage: sudo deploy/install-pi.sh")
    for option in ("--device-id", "--with-mosquitto", "--prefix", "--root", "--no-start", "--dry-run"):
        assert f"  {option}" in result.stdout, option
    assert "set -euo" not in result.stdout and "esac" not in result.stdout


@pytest.mark.parametrize("argv", [["--device-id"], ["--prefix"], ["--root"], ["--device-id", "--dry-run"],
                                  ["--device-id", ""]])
def test_missing_option_value_is_a_clear_message_not_unbound_variable(argv: list[str]) -> None:
    result = install(*argv)
    assert result.returncode == 2 and f"{argv[0]} needs a value (see --help)" in result.stderr
    assert "unbound variable" not in result.stderr


@pytest.mark.parametrize("device_id", ["bad id;rm", "a|b", "pi/shed", "-x", "x" * 65, "pi.shed", "homeassistant",
                                       "sensors", "viewer", "updater", "pi-shed\n"])
def test_bad_device_id_is_refused_before_anything_changes(tmp_path: Path, device_id: str) -> None:
    target = tmp_path / "root"
    result = install("--device-id", device_id, "--with-mosquitto", root=target)
    assert result.returncode == 2 and "--device-id" in result.stderr
    assert steps(result) == [] and not target.exists()


@pytest.mark.parametrize("prefix", ["opt/edgepipe", "/home/pi/edgepipe"])
def test_bad_prefix_is_refused_before_anything_changes(tmp_path: Path, prefix: str) -> None:
    target = tmp_path / "root"
    result = install("--prefix", prefix, root=target)
    assert result.returncode == 2 and "--prefix" in result.stderr and not target.exists()


def test_two_pis_with_the_stock_hostname_get_different_device_ids(tmp_path: Path) -> None:
    ids = []
    for n, machine_id in enumerate([MACHINE_ID, "9" * 32]):
        root = fake_machine(tmp_path / f"pi{n}", machine_id=machine_id)
        result = install("--dry-run", root=root)
        assert result.returncode == 0, result.stderr
        ids.append(re.search(r"device_id (\S+)", result.stdout).group(1).rstrip(","))
    assert ids == ["raspberrypi-3fa2c1", "raspberrypi-999999"]


# --- a real install into a temp root -----------------------------------------------------------
@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`install-pi.sh --root R --with-mosquitto` for real (venv and pip included), on a 'raspberrypi'."""
    if shutil.which("python3") is None or not Path(MOSQUITTO_PASSWD).exists():
        pytest.skip("needs python3 and mosquitto_passwd: apt-get install -y python3-venv mosquitto")
    root = fake_machine(tmp_path_factory.mktemp("pi") / "root")
    result = install("--with-mosquitto", root=root)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return root


def agent_config(root: Path) -> dict:
    return tomllib.loads((root / "etc/edgepipe/agent.toml").read_text())


def test_installed_config_follows_the_naming_rule_and_has_credentials(installed: Path) -> None:
    config = agent_config(installed)
    device = config["device_id"]
    assert device == "raspberrypi-3fa2c1"  # the stock host name never alone
    mqtt = config["mqtt"]
    assert mqtt["username"] == device and mqtt["base_topic"] == "edgepipe/{device_id}"
    assert mqtt["client_id"] == f"edgepipe-{device}-3fa2c1"
    assert mqtt["password_file"] == str(installed / "etc/edgepipe/mqtt-password")
    assert config["models_dir"] == str(installed / "opt/edgepipe/models")
    assert config["state_dir"] == str(installed / "var/lib/edgepipe")
    secret = Path(mqtt["password_file"]).read_text().strip()
    assert len(secret) >= 24
    broker_line = (installed / "etc/mosquitto/edgepipe.passwd").read_text()
    assert broker_line.startswith(f"{device}:$7$") and secret not in broker_line  # hashed for the broker


def test_password_files_and_config_are_not_world_readable(installed: Path) -> None:
    for name in ("etc/edgepipe/mqtt-password", "etc/mosquitto/edgepipe.passwd", "etc/edgepipe/agent.toml"):
        mode = stat.S_IMODE((installed / name).stat().st_mode)
        assert mode == 0o640, f"{name}: {oct(mode)}"


def test_reinstall_keeps_the_config_and_the_password(installed: Path) -> None:
    before = {n: (installed / n).read_text() for n in ("etc/edgepipe/agent.toml", "etc/edgepipe/mqtt-password")}
    result = install("--with-mosquitto", root=installed)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "kept" in result.stdout
    for name, text in before.items():
        assert (installed / name).read_text() == text, name
    users = [line.split(":")[0] for line in (installed / "etc/mosquitto/edgepipe.passwd").read_text().splitlines()]
    assert users == ["raspberrypi-3fa2c1"]


def test_rerun_with_another_device_id_gives_the_new_user_its_own_password(installed: Path, tmp_path: Path) -> None:
    """Issue 24 item 13: the re-run reused the first user's password for the second (either device could log in as
    the other), and its NOTE did not name device_id. The root's etc/ is put back afterwards."""
    etc = installed / "etc"
    shutil.copytree(etc, tmp_path / "etc-before", symlinks=True)
    first = agent_config(installed)["device_id"]
    old_secret = (etc / "edgepipe/mqtt-password").read_text().strip()
    try:
        result = install("--with-mosquitto", "--device-id", "pi-second", root=installed)
        assert result.returncode == 0, result.stderr[-2000:]
        new_secret = (etc / "edgepipe/mqtt-password").read_text().strip()
        assert new_secret != old_secret and len(new_secret) >= 24
        note = next(line for line in result.stdout.splitlines() if line.startswith("# NOTE"))
        assert 'device_id = "pi-second"' in note and 'mqtt.username = "pi-second"' in note, note
        acl = (etc / "mosquitto/edgepipe.acl").read_text().splitlines()
        assert f"user {first}" in acl and "user pi-second" in acl  # the first device's section is kept
        broker = Broker(tmp_path / "broker", listener="listener {port} 127.0.0.1\nallow_anonymous false\n"
                        f"password_file {etc}/mosquitto/edgepipe.passwd\n").start()
        try:
            logins = {(user, secret): can_log_in(broker.port, user, secret) for user in (first, "pi-second")
                      for secret in (old_secret, new_secret)}
        finally:
            broker.stop()
        assert logins == {(first, old_secret): True, (first, new_secret): False,
                          ("pi-second", old_secret): False, ("pi-second", new_secret): True}, logins
    finally:
        shutil.rmtree(etc)
        shutil.copytree(tmp_path / "etc-before", etc, symlinks=True)


def can_log_in(port: int, user: str, password: str) -> bool:
    answer: list[bool] = []
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"login-{user}-{len(password)}-{time.monotonic_ns()}")
    client.username_pw_set(user, password)
    client.on_connect = lambda c, u, f, reason, p: answer.append(not reason.is_failure)
    client.connect("127.0.0.1", port)
    deadline = time.monotonic() + 10
    while not answer and time.monotonic() < deadline:
        client.loop(0.1)
    client.disconnect()
    return answer == [True]


def test_unit_honours_the_prefix(installed: Path) -> None:
    unit = (installed / "etc/systemd/system/edgepipe.service").read_text()
    python = installed / "opt/edgepipe/.venv/bin/python"
    assert f"ExecStart={python} -m edge run --config {installed}/etc/edgepipe/agent.toml" in unit.splitlines()
    for path in ("/opt/edgepipe", "/etc/edgepipe", "/var/lib/edgepipe"):  # each one moved under the root
        assert unit.count(path) == unit.count(f"{installed}{path}") > 0, path
    assert python.exists()


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed here (apt-get install systemd)")
@requires_package("systemd")
def test_installed_unit_passes_systemd_analyze_verify(installed: Path) -> None:
    result = subprocess.run([SYSTEMD_ANALYZE, "verify", str(installed / "etc/systemd/system/edgepipe.service")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr


def test_a_trial_install_unit_runs_as_edgepipe_whoever_installs_it(installed: Path) -> None:
    """Under --root the files belong to the caller, but the unit names the service user a real install
    creates: it named the caller, and `make test` as `nobody` then failed systemd-analyze verify
    ("Special user nobody configured, this is not safe!"; as root it said User=root)."""
    unit = (installed / "etc/systemd/system/edgepipe.service").read_text().splitlines()
    assert "User=edgepipe" in unit and "Group=edgepipe" in unit


@requires_package("mosquitto")
def test_readme_install_loses_no_message_agent_reaches_home_assistant(installed: Path, tmp_path: Path) -> None:
    """The README path end to end: the installed broker files, the installed agent and its credentials.
    Before the fix the agent logged in as `edgepipe-<id>` and the ACL denied every publish silently."""
    mosq = installed / "etc/mosquitto"
    passwd = tmp_path / "passwd"  # the installed file plus Home Assistant's user, as the README says to add
    shutil.copy(mosq / "edgepipe.passwd", passwd)
    subprocess.run([MOSQUITTO_PASSWD, "-b", str(passwd), "homeassistant", "ha-pw"], check=True, capture_output=True)
    installed_conf = (mosq / "conf.d/edgepipe.conf").read_text().splitlines()
    assert f"acl_file {mosq}/edgepipe.acl" in installed_conf and "allow_anonymous false" in installed_conf
    port = free_port()
    broker = Broker(tmp_path / "broker", listener=f"listener {port} 127.0.0.1\nallow_anonymous false\n"
                    f"password_file {passwd}\nacl_file {mosq}/edgepipe.acl\n")
    broker.port = port
    broker.start()
    device = agent_config(installed)["device_id"]
    seen: dict[str, bytes] = {}
    ha = paho.Client(CallbackAPIVersion.VERSION2, client_id="test-homeassistant")
    ha.username_pw_set("homeassistant", "ha-pw")
    ha.on_message = lambda c, u, m: seen.setdefault(m.topic, m.payload)
    ha.connect("127.0.0.1", port)
    ha.subscribe([(f"edgepipe/{device}/#", 1), ("homeassistant/#", 1)])
    ha.loop_start()
    log = (tmp_path / "agent.log").open("wb")
    agent = subprocess.Popen([str(installed / "opt/edgepipe/.venv/bin/python"), "-m", "edge", "run", "--config",
                              str(installed / "etc/edgepipe/agent.toml"), "--host", "127.0.0.1", "--port", str(port)],
                             cwd=installed / "opt/edgepipe", stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while f"edgepipe/{device}/status" not in seen and time.monotonic() < deadline and agent.poll() is None:
            time.sleep(0.1)
        assert b"online" in seen.get(f"edgepipe/{device}/status", b""), (tmp_path / "agent.log").read_text()
        ha.publish(f"edgepipe/{device}/cmd/reset", '{"id": "walk-1", "sensor": "line1"}', qos=1).wait_for_publish(10)
        while f"edgepipe/{device}/cmd/reset/result" not in seen and time.monotonic() < deadline:
            time.sleep(0.1)
        assert f"edgepipe/{device}/cmd/reset/result" in seen, sorted(seen)
        assert json.loads(seen[f"edgepipe/{device}/cmd/reset/result"])["ok"] is True
        # the discovery configs passed the ACL too: Home Assistant sees the device's entities
        assert any(re.fullmatch(rf"homeassistant/\w+/edgepipe_{device}/\w+/config", t) for t in seen), sorted(seen)
    finally:
        agent.terminate()
        agent.wait(30)
        log.close()
        ha.disconnect()
        ha.loop_stop()
        broker.stop()


# --- the unit ----------------------------------------------------------------------------------
def test_unit_has_restart_user_runtime_dir_and_hardening() -> None:
    unit = (DEPLOY / "edgepipe.service").read_text().splitlines()
    for line in ("Restart=on-failure", "RestartPreventExitStatus=2", "User=edgepipe", "NoNewPrivileges=yes",
                 "ProtectSystem=strict", "ProtectHome=yes", "StateDirectory=edgepipe", "RuntimeDirectory=edgepipe",
                 "ReadWritePaths=/var/lib/edgepipe", "SupplementaryGroups=video", "DevicePolicy=closed",
                 "DeviceAllow=char-video4linux rw", "DeviceAllow=char-media rw", "DeviceAllow=char-dma_heap rw",
                 "ExecStart=/opt/edgepipe/.venv/bin/python -m edge run --config /etc/edgepipe/agent.toml"):
        assert line in unit, line
    assert "PrivateDevices=yes" not in unit  # it would hide the camera


def test_config_errors_exit_with_the_status_the_unit_does_not_restart(tmp_path: Path) -> None:
    bad = tmp_path / "agent.toml"
    bad.write_text('device_id = "bad id"\n')
    result = subprocess.run([sys.executable, "-m", "edge", "run", "--config", str(bad)], capture_output=True,
                            text=True, timeout=60, cwd=ROOT)
    prevent = next(line for line in (DEPLOY / "edgepipe.service").read_text().splitlines()
                   if line.startswith("RestartPreventExitStatus="))
    assert str(result.returncode) in prevent.split("=")[1].split() and "device_id" in result.stderr


def unit_for_analysis(tmp_path: Path) -> Path:
    # the venv exists only on a Pi: point the unit at this Python so verify can check the rest
    unit = tmp_path / "edgepipe.service"
    unit.write_text((DEPLOY / "edgepipe.service").read_text().replace("/opt/edgepipe/.venv/bin/python",
                                                                      sys.executable))
    return unit


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed here (apt-get install systemd)")
@requires_package("systemd")
def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    result = subprocess.run([SYSTEMD_ANALYZE, "verify", str(unit_for_analysis(tmp_path))], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed here (apt-get install systemd)")
@requires_package("systemd")
def test_unit_security_exposure_is_ok_with_the_camera_reachable(tmp_path: Path) -> None:
    result = subprocess.run([SYSTEMD_ANALYZE, "security", "--offline=true", "--no-pager",
                             str(unit_for_analysis(tmp_path))], capture_output=True, text=True, timeout=60)
    found = re.search(r"Overall exposure level for edgepipe.service: ([\d.]+) (\w+)", result.stdout)
    if found is None and "--offline" in result.stderr:
        pytest.skip(f"this systemd-analyze cannot rate a unit file offline: {result.stderr.strip()[:100]}")
    assert found is not None, result.stdout[-500:] + result.stderr
    assert float(found.group(1)) <= 4.0 and found.group(2) == "OK", found.group(0)
    device_acl = next(line for line in result.stdout.splitlines() if "DeviceAllow=" in line)
    for device in ("char-video4linux:rw", "char-media:rw", "char-dma_heap:rw"):
        assert device in device_acl, device


# --- mosquitto ---------------------------------------------------------------------------------
def test_mosquitto_example_needs_a_password_and_an_acl() -> None:
    conf = (DEPLOY / "mosquitto" / "edgepipe.conf").read_text().splitlines()
    assert "allow_anonymous false" in conf
    assert "password_file /etc/mosquitto/edgepipe.passwd" in conf and "acl_file /etc/mosquitto/edgepipe.acl" in conf
    acl = (DEPLOY / "mosquitto" / "edgepipe.acl").read_text().splitlines()
    agent = (DEPLOY / "mosquitto" / "agent.acl").read_text().splitlines()  # each device's section, by the installer
    assert "topic write edgepipe/{device_id}/status" in agent and not any(line.startswith("topic write #")
                                                                           for line in acl + agent)
    assert "topic write edgepipe/{device_id}/#" not in agent  # the agent may not forge its own commands or readings
    assert not any(line.startswith("pattern") for line in acl + agent)  # patterns apply to every user (issue 24)


def test_one_naming_rule_in_acl_readme_installer_and_example() -> None:
    """The broker user is the device id: no document may still say `edgepipe-<id>`."""
    for path in (DEPLOY / "mosquitto/edgepipe.conf", DEPLOY / "mosquitto/edgepipe.acl", ROOT / "README.md",
                 DEPLOY / "agent.example.toml", INSTALLER):
        text = path.read_text()
        assert not re.search(r"edgepipe-(pi-shed|<id>)", text), path.name
    readme = (ROOT / "README.md").read_text()
    assert "--device-id pi-shed" in readme and "mosquitto_passwd" in (DEPLOY / "mosquitto/edgepipe.conf").read_text()


# --- inside an emulated arm64 Debian (what `make pi-check` builds) ------------------------------
def pi_image_skip_reason() -> str | None:
    """Minutes under qemu: only with EDGEPIPE_PI_IMAGE_TEST=1 and pi-check's cached image and wheels."""
    sys.path.insert(0, str(ROOT))
    from tools.pi.host import host_problems
    from tools.pi.images import CACHE, SUITES, base_is_cached

    if os.environ.get("EDGEPIPE_PI_IMAGE_TEST") != "1":
        return "the installer in an arm64 image takes minutes: EDGEPIPE_PI_IMAGE_TEST=1 (make pi-check runs it too)"
    if not base_is_cached("bookworm") or not (CACHE / "wheels" / f"edge-py{SUITES['bookworm']}").is_dir():
        return (f"no cached arm64 bookworm image and wheels in {CACHE}: `sudo make pi-check` builds them "
                "(mmdebstrap + qemu-user-static)")
    problems = host_problems()
    return "; ".join(problems) if problems else None


def test_installer_runs_for_real_inside_an_arm64_debian_image(tmp_path: Path) -> None:
    reason = pi_image_skip_reason()
    if reason:
        pytest.skip(reason)
    from tools.pi.images import Image
    from tools.pi.steps import CHECK, INSTALL

    with Image("bookworm", tmp_path) as image:
        output = image.sh(INSTALL, online=True)
        assert "systemd is not running here" in output and "+ systemd-analyze verify" in output
        facts = image.sh("stat -c '%n %a %U:%G' /etc/mosquitto/edgepipe.passwd /etc/edgepipe/mqtt-password "
                         "/etc/edgepipe/agent.toml; id -nG edgepipe; systemctl is-enabled edgepipe.service; "
                         "grep -E '^(username|password_file|device_id) ' /etc/edgepipe/agent.toml")
        for line in ("/etc/mosquitto/edgepipe.passwd 640 root:mosquitto",
                     "/etc/edgepipe/mqtt-password 640 root:edgepipe", "/etc/edgepipe/agent.toml 640 root:edgepipe",
                     "edgepipe video", "enabled",
                     'username = "pi-shed"', 'password_file = "/etc/edgepipe/mqtt-password"', 'device_id = "pi-shed"'):
            assert any(got.startswith(line) for got in facts.splitlines()), (line, facts)
        # the image's broker takes the agent's user and password; the models run under emulation
        check = image.sh(CHECK)
        assert "config: ok" in check and "verified" in check and "broker: ok" in check
    assert os.path.ismount(image.root / "proc") is False  # nothing left mounted
