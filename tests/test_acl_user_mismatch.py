"""Issue 24 item 16: an agent whose broker user is not its device_id publishes into a void (the shipped ACL grants
user X only edgepipe/X/..., and mosquitto acknowledges a denied publish). `edge check` and `edge run` both say why,
in the same words, against mosquitto running the shipped conf and ACL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, requires_package
from tests.helpers.isolation import no_tf_env
from tests.helpers.mqtt import AgentProcess, wait_for_stats
from tools.rate import shipped_broker

pytestmark = requires_package("mosquitto")
SAYS = "mqtt.username 'pi-user' is not the device_id 'pi-other'"


def test_run_and_check_say_the_device_id_is_not_the_broker_user(tmp_path: Path) -> None:
    broker = shipped_broker(tmp_path / "mosq", {"pi-user": "pw"}).start()
    (tmp_path / "pw").write_text("pw\n")
    stats = tmp_path / "stats.json"
    config = tmp_path / "agent.toml"
    config.write_text(f'device_id = "pi-other"\nmodels_dir = "{ROOT / "models"}"\nstate_dir = "{tmp_path / "state"}"\n'
                      f'stats_file = "{stats}"\nstats_interval = 1\n[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\n'
                      f'username = "pi-user"\npassword_file = "{tmp_path / "pw"}"\ndiscovery = false\n'
                      '[[sensor]]\nname = "line1"\n')
    agent = AgentProcess(config)
    check = subprocess.Popen([sys.executable, "-m", "edge", "check", "--config", str(config)], cwd=ROOT,
                             env=no_tf_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        checked = check.communicate(timeout=60)[0]
        assert check.returncode != 0 and SAYS in checked, checked
        assert wait_for_stats(stats, lambda s: any(SAYS in p for p in s["problems"]), 40), agent.output()[-2000:]
        assert not json.loads(stats.read_text())["healthy"]
    finally:
        agent.stop()
        broker.stop()
    assert "acl_denied: a message published on edgepipe/pi-other/probe did not come back" in agent.output()
    assert SAYS in agent.output()
