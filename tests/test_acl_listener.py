"""Issue 24 item 17: the shipped deploy/mosquitto/edgepipe.conf opened a plain listener on every interface. Run
as shipped (only the port and the /etc/mosquitto paths moved), it must answer on loopback and not on this
machine's other addresses; opening it to the LAN is a documented second listener."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from tests.conftest import ROOT, requires_package
from tests.helpers.mqtt import Broker, free_port
from tools.broker import add_password, listening, shipped_acl

CONF = ROOT / "deploy/mosquitto/edgepipe.conf"


def outward_address() -> str | None:
    """This machine's address on its default route (no packet is sent), or None without one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


@requires_package("mosquitto")
def test_shipped_conf_listens_on_loopback_only(tmp_path: Path) -> None:
    address = outward_address()
    if address is None:
        pytest.skip("this machine has no address besides loopback to try")
    port = free_port()
    add_password(tmp_path / "edgepipe.passwd", "pi-shed", "pw")
    (tmp_path / "edgepipe.acl").write_text(shipped_acl(["pi-shed"]))
    text = re.sub(r"^listener 1883\b", f"listener {port}", CONF.read_text(), flags=re.M)  # the port, not the address
    text = text.replace("/etc/mosquitto/edgepipe.", f"{tmp_path}/edgepipe.")
    broker = Broker(tmp_path / "broker", listener=text, port=port).start()
    try:
        assert listening("127.0.0.1", port)
        assert not listening(address, port), f"the shipped conf listens on {address}:{port}, not only on loopback"
    finally:
        broker.stop()


def test_opening_it_to_the_lan_is_documented() -> None:
    conf = CONF.read_text()
    assert "bind_interface" in conf and "edgepipe-lan.conf" in conf
    assert "Opening the broker to the LAN" in (ROOT / "docs/deploy.md").read_text()
