"""Flower's Deployment Engine for real: SuperLink and SuperNodes as processes on 127.0.0.1."""

import csv
import functools
import socket
import ssl
import threading

import pytest
from cryptography import x509
from typer.testing import CliRunner

from fedslim.cli import cli
from fedslim.deploy.certs import make_certs


def _handshake(files, server_name: str) -> str:
    """A real TLS handshake on loopback: server with the cert, client trusting only the CA."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(files.cert, files.key)
    client_ctx = ssl.create_default_context(cafile=str(files.ca))
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(10)

        def serve():
            conn, _ = listener.accept()
            try:
                with server_ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"ok")
            except ssl.SSLError:
                pass

        worker = threading.Thread(target=serve, daemon=True)
        worker.start()
        with (
            socket.create_connection(listener.getsockname(), timeout=10) as raw,
            client_ctx.wrap_socket(raw, server_hostname=server_name) as tls,
        ):
            got = tls.recv(2).decode()
        worker.join(10)
        return got


def test_certificates_pass_a_tls_handshake_for_their_hosts(tmp_path):
    files = make_certs(tmp_path, ["127.0.0.1", "edge-server.lan"])
    assert _handshake(files, "127.0.0.1") == "ok"
    assert _handshake(files, "edge-server.lan") == "ok"
    san = x509.load_pem_x509_certificate(
        files.cert.read_bytes()
    ).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert "edge-server.lan" in san.value.get_values_for_type(x509.DNSName)
    assert files.key.stat().st_mode & 0o077 == 0 and files.ca_key.stat().st_mode & 0o077 == 0


def test_a_host_missing_from_the_certificate_fails_the_handshake(tmp_path):
    files = make_certs(tmp_path, ["127.0.0.1"])
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(files, "other.lan")


@pytest.mark.parametrize(("hosts", "days", "match"), [([], 30, "host"), (["a"], 0, "days")])
def test_bad_certificate_requests_are_refused(tmp_path, hosts, days, match):
    with pytest.raises(ValueError, match=match):
        make_certs(tmp_path, hosts, days=days)


def test_a_federation_on_the_deployment_engine_over_tls(tmp_path):
    """`fedslim deploy`: SuperLink + 2 SuperNodes with TLS, compressed both ways, 1 round;
    SuperNode 0 declares itself a weak device (rank 4 of the run's 8) on 3G in its node
    config, and gets the pipeline the run names for 3G."""
    out, work = tmp_path / "run", tmp_path / "deploy"
    args = ["deploy", "--out", str(out), "--dir", str(work), "--nodes", "2"]
    args += ["--node-config", "0:lora-r=4", "--node-config", "0:link-profile=3g"]
    for kv in ("num-server-rounds=1", "num-examples=400", "local-steps=5",
               "uplink-codec=by-link:3g=sign|zstd:3,*=q8|zstd:3",
               "downlink-codec=q8|zstd:3"):  # fmt: skip
        args += ["--set", kv]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output + (work / "superlink.log").read_text()[-3000:]
    assert "final accuracy" in result.output
    with (out / "clients.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["client"] for r in rows) == ["0", "1"]  # each SuperNode's partition-id
    assert all(r["status"] == "ok" and int(r["uplink_bytes"]) > 0 for r in rows)
    weak, strong = sorted(rows, key=lambda r: r["client"])
    assert int(weak["uplink_payload_bytes"]) < 0.75 * int(strong["uplink_payload_bytes"])
    assert (weak["uplink_codec"], strong["uplink_codec"]) == ("sign|zstd:3", "q8|zstd:3")
    assert "https://127.0.0.1" in (work / "superlink.log").read_text()  # TLS, not plain text
    errors = [ln for i in range(2) for ln in (work / f"supernode-{i}.log").read_text().splitlines()
              if "Error" in ln]  # fmt: skip
    assert not errors, errors


def test_secure_aggregation_on_the_deployment_engine(tmp_path):
    """Three SuperNodes over TLS on the fast engine: each keeps its round's secrets in its
    Context between the key, share, train and unmask messages; every row counts them."""
    out, work = tmp_path / "run", tmp_path / "deploy"
    args = ["deploy", "--out", str(out), "--dir", str(work), "--nodes", "3"]
    for kv in ("num-server-rounds=1", "num-examples=400", "local-steps=5", "secagg=true",
               "dp-clip=1.0"):  # fmt: skip
        args += ["--set", kv]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output + (work / "superlink.log").read_text()[-3000:]
    with (out / "clients.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["client"] for r in rows) == ["0", "1", "2"]
    assert all(r["status"] == "ok" and r["exchanges"] == "4" for r in rows), rows
    with (out / "rounds.csv").open() as fh:
        last = list(csv.DictReader(fh))[-1]
    assert float(last["accuracy"]) > 0 and last["dropped"] == "0"


@pytest.mark.parametrize(
    ("item", "code", "words"),
    [
        ("zero:lora-r=4", 2, "I:KEY=VALUE"),
        ("0:lora-r", 2, "I:KEY=VALUE"),
        ("5:lora-r=4", 1, "0..1"),
    ],
)
def test_bad_node_config_fails_before_any_process_starts(tmp_path, item, code, words):
    args = ["deploy", "--workdir", str(tmp_path), "--set", "num-supernodes=2"]  # old names
    result = CliRunner().invoke(cli, [*args, "--node-config", item])
    assert result.exit_code == code and words in result.output
    for old, new in (("--workdir", "--dir"), ("num-supernodes", "--nodes")):
        assert f"warning: {old} is now {new}" in result.output
    assert not list(tmp_path.glob("*.log"))


def test_certificates_pass_strict_rfc5280_verification(tmp_path):
    import datetime as dt

    from cryptography.x509.verification import PolicyBuilder, Store

    files = make_certs(tmp_path, ["127.0.0.1", "edge-server.lan"])
    ca = x509.load_pem_x509_certificate(files.ca.read_bytes())
    leaf = x509.load_pem_x509_certificate(files.cert.read_bytes())
    verifier = (
        PolicyBuilder()
        .store(Store([ca]))
        .time(dt.datetime.now(dt.UTC))
        .build_server_verifier(x509.DNSName("edge-server.lan"))
    )
    chain = verifier.verify(leaf, [])  # needs subject/authority key identifiers
    assert chain[-1] == ca


def test_keys_are_written_fresh_0600_and_never_through_a_link(tmp_path):
    import os

    (tmp_path / "server.key").write_text("old")
    os.chmod(tmp_path / "server.key", 0o644)  # an existing, too-open file is not reused
    files = make_certs(tmp_path, ["127.0.0.1"])
    assert files.key.stat().st_mode & 0o777 == 0o600
    target = tmp_path / "elsewhere"
    target.write_text("precious")
    (tmp_path / "linked").mkdir()
    (tmp_path / "linked" / "ca.key").symlink_to(target)
    with pytest.raises(ValueError, match="link"):
        make_certs(tmp_path / "linked", ["127.0.0.1"])
    assert target.read_text() == "precious"


def test_a_validity_beyond_ten_years_is_refused(tmp_path):
    result = CliRunner().invoke(
        cli, ["certs", "--out", str(tmp_path), "--host", "a", "--days", "100000"]
    )
    assert result.exit_code == 2 and "--days" in result.output


def _processes_in(directory) -> list[str]:
    """Command lines of the processes running in ``directory`` (SuperLink, SuperNodes and
    what they spawn all start there)."""
    import os

    found = []
    for proc in __import__("pathlib").Path("/proc").glob("[0-9]*"):
        try:
            if os.readlink(proc / "cwd") != str(directory.resolve()):
                continue
            found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue
    return found


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP"])
def test_deploy_stops_everything_it_started_when_terminated(tmp_path, sig):
    import signal
    import subprocess
    import sys
    import time

    work = tmp_path / "deploy"
    args = [sys.executable, "-m", "fedslim.cli", "deploy", "--insecure", "--dir", str(work)]
    args += ["--out", str(tmp_path / "run"), "--nodes", "2"]
    args += ["--set", "num-server-rounds=50", "--set", "num-examples=400"]
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        deadline = time.monotonic() + 120
        for line in proc.stderr:  # wait until the federation is up
            if "connected" in line or time.monotonic() > deadline:
                break
        assert len(_processes_in(work)) >= 3, "the deployment never started"
        time.sleep(2)
        proc.send_signal(getattr(signal, sig))
        assert proc.wait(timeout=60) != 0
        deadline = time.monotonic() + 20
        while _processes_in(work) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _processes_in(work)
    finally:
        proc.kill()
        proc.wait()


def test_a_federation_stays_up_for_two_jobs_and_down_stops_exactly_it(tmp_path, monkeypatch):
    """`deploy up`, two `deploy run` jobs, `status`, `down`: nothing of it left running.
    Under a Flower version the fast engine was never tested with: one warning, the
    supported engine, and the jobs run all the same."""
    from fedslim.flower_internals import check

    monkeypatch.setattr(check, "version", lambda _package: "1.99.0")
    work = tmp_path / "fed"
    runner = CliRunner()
    with pytest.warns(RuntimeWarning, match="patches are off") as caught:
        up = runner.invoke(cli, ["deploy", "up", "--dir", str(work), "--nodes", "2", "--insecure"])
    try:
        assert up.exit_code == 0, up.output
        said = [str(w.message) for w in caught if w.category is RuntimeWarning]
        assert len(said) == 1 and "found 1.99.0" in said[0], said  # ResourceWarnings aside
        assert "supported engine" in up.output, up.output
        assert len(_processes_in(work)) >= 3
        again = runner.invoke(cli, ["deploy", "up", "--dir", str(work), "--insecure"])
        assert again.exit_code == 1 and "already up" in again.output
        for job in ("a", "b"):
            args = ["deploy", "run", "--dir", str(work), "--out", str(tmp_path / job)]
            for kv in ("num-server-rounds=1", "num-examples=400", "local-steps=2"):
                args += ["--set", kv]
            done = runner.invoke(cli, args)
            assert done.exit_code == 0, done.output
            with (tmp_path / job / "rounds.csv").open() as fh:
                rows = list(csv.DictReader(fh))
            assert [r["round"] for r in rows] == ["0", "1"] and float(rows[1]["wall_s"]) > 0
        nothing = ["deploy", "run", "--dir", str(work), "--out", str(tmp_path / "c"), "--resume"]
        refused = runner.invoke(cli, nothing)  # refused here, not by the ServerApp later
        assert refused.exit_code == 2 and "no checkpoint" in refused.output, refused.output
        status = runner.invoke(cli, ["deploy", "status", "--dir", str(work)])
        assert status.exit_code == 0 and status.output.count("running") == 3
    finally:
        down = runner.invoke(cli, ["deploy", "down", "--dir", str(work)])
    assert down.exit_code == 0 and "stopped superlink" in down.output
    assert not _processes_in(work)
    after = runner.invoke(cli, ["deploy", "status", "--dir", str(work)])
    assert after.exit_code == 3 and "down" in after.output


def test_the_flower_internals_fedslim_relies_on_are_there():
    """Fails loudly when a Flower upgrade moves what deploy's fast engine patches: then
    re-check flower_internals/, or use --engine supported."""
    from fedslim.flower_internals import check_flower

    check_flower()


def test_each_private_use_is_checked_alone_and_only_the_executor_decides_the_engine(
    monkeypatch,
):
    """A patch whose probe fails is left off with one warning and the engine stays fast;
    an executor that fails takes the supported engine; message sizes fall back to an
    estimate; the simulation's run config, which nothing replaces, raises naming why."""
    from flwr.app import ConfigRecord, Message, RecordDict

    from fedslim.deploy.local import _fast_or_supported
    from fedslim.flower_internals import check, messages, simulation

    def moved():
        raise RuntimeError("start_client_internal no longer sleeps 3 s")

    sleeps = next(u for u in check.USES if u.name == "supernode-sleeps")
    uses = tuple(u if u is not sleeps else check.Use(u.name, u.symbols, moved) for u in check.USES)
    monkeypatch.setattr(check, "USES", uses)
    assert check.working() == ("pull-backoff", "stopped-pulls", "claimed-tasks")
    with pytest.warns(RuntimeWarning, match="runs without: supernode-sleeps: .* sleeps 3 s"):
        assert _fast_or_supported() == "fast"
    import flwr.supercore.heartbeat as heartbeat

    monkeypatch.delattr(heartbeat, "HeartbeatSender")
    with pytest.warns(RuntimeWarning, match="executor: .* has no flwr.supercore.heartbeat"):
        assert _fast_or_supported() == "supported"
    import flwr.supercore.telemetry as telemetry

    monkeypatch.delattr(telemetry, "EventType")
    with pytest.raises(RuntimeError, match="simulation-run-config: .*EventType"):
        apps = dict(client_app=None, server_app=None, backend_config={}, app_dir="")
        simulation.run_with_config({}, run_id=1, num_supernodes=1, verbose=False, **apps)
    from flwr.supercore.task_identity import TaskIdentity

    for name, value in (("_run_id", 7), ("_node_id", 1), ("_task_id", 3)):
        monkeypatch.setattr(TaskIdentity, name, value)
    msg = Message(RecordDict({"c": ConfigRecord({"up": bytes(5000)})}), dst_node_id=1,
                  message_type="train")  # fmt: skip
    exact = messages.wire_bytes(msg)
    import flwr.supercore.inflatable.inflatable_object as inflatable

    monkeypatch.delattr(inflatable, "get_all_nested_objects")
    monkeypatch.setattr(messages, "_exact", functools.cache(messages._exact.__wrapped__))
    with pytest.warns(RuntimeWarning, match="message sizes are estimated"):
        assert abs(messages.wire_bytes(msg) - exact) < 0.1 * exact


def _pull_a_message_of_a_stopped_run(monkeypatch) -> tuple[list, list]:
    """The SuperNode's own ``_pull_and_store_message`` on a real in-memory NodeState, the
    run stopping while the message's objects are pulled: (messages, tasks) left behind."""
    from flwr.app import ConfigRecord, Message, RecordDict
    from flwr.supercore.inflatable.inflatable_object import get_object_tree
    from flwr.supercore.object_store import ObjectStoreFactory
    from flwr.supercore.run import Run, RunNotRunningException
    from flwr.supercore.task_identity import TaskIdentity
    from flwr.supernode import start_client_internal as sci
    from flwr.supernode.nodestate import NodeStateFactory

    for name, value in (("_run_id", 7), ("_node_id", 1), ("_task_id", 3)):
        monkeypatch.setattr(TaskIdentity, name, value)  # who sends the message
    stores = ObjectStoreFactory()
    state = NodeStateFactory(stores).state()
    state.set_node_id(5)
    state.store_run(Run.create_empty(7))
    msg = Message(RecordDict({"c": ConfigRecord({"x": 1})}), dst_node_id=5, message_type="train")
    msg.metadata.__dict__["_message_id"] = msg.object_id

    def pull_object(run_id, object_id):
        raise RunNotRunningException  # what Flower's retry invoker raises then

    sci._pull_and_store_message(
        state, stores.store(), {}, lambda: (msg, get_object_tree(msg)), get_run=None,
        get_fab=None, pull_object=pull_object, confirm_message_received=None,
        trusted_entities=None,
    )  # fmt: skip
    return state.get_messages_legacy(run_ids=None, is_reply=False), state.get_tasks()


def test_a_run_stopped_mid_pull_leaves_no_task_for_the_executor(monkeypatch):
    """Stock Flower 1.42 leaves the half-received message and a pending task behind (its
    RunNotRunningException is a BaseException); fedslim's one long-running executor then
    waits minutes on that task while every later message queues behind it. With
    ``fail_stopped_pulls`` Flower's own cleanup runs: no message, the task failed."""
    from flwr.supernode import start_client_internal as sci

    from fedslim.flower_internals import fail_stopped_pulls

    monkeypatch.setattr(sci, "pull_objects", sci.pull_objects)  # restored afterwards
    messages, tasks = _pull_a_message_of_a_stopped_run(monkeypatch)
    assert len(messages) == 1 and [t.status.status for t in tasks] == ["pending"]  # the orphan
    fail_stopped_pulls()
    fail_stopped_pulls()  # idempotent
    messages, tasks = _pull_a_message_of_a_stopped_run(monkeypatch)
    assert messages == []
    assert [(t.status.status, t.status.sub_status) for t in tasks] == [("finished", "failed")]
    assert "the run stopped" in tasks[0].status.details


@pytest.mark.parametrize(
    "read", [True, False, "half-uploaded"], ids=["message-read", "message-unread", "mid-upload"]
)
def test_a_dead_executors_running_task_gets_flowers_crash_reply_at_once(monkeypatch, read):
    """The SuperNode's own state (through the recorded factory): a running task whose
    executor died is expired at once and its message answered with Flower's crash reply,
    read or not, or read and its reply half uploaded (stock Flower answers only read ones
    without a reply, after 60 s: the SuperNode, waiting for that reply, would wait
    forever)."""
    import importlib

    from flwr.app import ConfigRecord, Message, RecordDict
    from flwr.supercore.constant import TaskType
    from flwr.supercore.object_store import ObjectStoreFactory
    from flwr.supercore.task_identity import TaskIdentity

    from fedslim.flower_internals import patches

    fs = importlib.import_module("flwr.supernode.cli.flower_supernode")
    monkeypatch.setattr(fs, "NodeStateFactory", fs.NodeStateFactory)  # restored afterwards
    monkeypatch.setattr(patches, "_FACTORY", [])
    for name, value in (("_run_id", 7), ("_node_id", 1), ("_task_id", 3)):
        monkeypatch.setattr(TaskIdentity, name, value)
    patches.record_node_state()
    state = fs.NodeStateFactory(ObjectStoreFactory()).state()  # as flower-supernode makes it
    state.set_node_id(5)
    task = state.create_task(task_type=TaskType.CLIENT_APP, run_id=7)
    msg = Message(RecordDict({"c": ConfigRecord({"x": 1})}), dst_node_id=5, message_type="train")
    msg.metadata.__dict__["_message_id"] = msg.object_id
    state.store_message(msg)
    state.claim_task(task)
    state.activate_task(task)  # PullTaskInput: running
    if read:
        assert state.get_messages_legacy(run_ids=[7], is_reply=False, limit=1)
    if read == "half-uploaded":
        partial = _push_half_a_reply(state, msg)
    assert patches.expire_claimed_tasks() == 1
    [done] = state.get_tasks(task_ids=[task])
    assert (done.status.status, done.status.sub_status) == ("finished", "failed")
    [reply] = state.get_messages_legacy(is_reply=True)
    assert reply.metadata.reply_to_message_id == msg.metadata.message_id and reply.has_error()
    if read == "half-uploaded":  # gone, with its session: the crash reply stands alone
        assert partial not in state.msg_store and not state._object_push_sessions


def _push_half_a_reply(state, msg) -> str:
    """What an executor killed mid-upload leaves: its reply and one of its objects pushed,
    the rest never (``run_clientapp.push_message`` up to its first PushObject)."""
    import numpy as np
    from flwr.app import ArrayRecord, Message, RecordDict
    from flwr.app.message import remove_content_from_message
    from flwr.supercore.inflatable.inflatable_object import (
        get_all_nested_objects,
        get_object_tree,
    )

    arrays = ArrayRecord([np.ones(8, np.float32), np.zeros(8, np.float32)])
    reply = Message(RecordDict({"arrays": arrays}), reply_to=msg)
    reply.metadata.__dict__["_message_id"] = reply.object_id
    session = state.start_session(7)
    stored, missing = state.store_message_and_object_tree(
        remove_content_from_message(reply), get_object_tree(reply), session
    )
    assert stored and len(missing) > 2
    objects = get_all_nested_objects(reply)
    first = next(o for o in missing if o != reply.object_id)
    assert state.store_object(7, session, first, objects[first].deflate())
    assert state.get_messages_legacy(is_reply=True) == []  # incomplete: held back
    assert reply.object_id in state.msg_store
    return reply.object_id


def test_node_auth_admits_registered_keys_and_refuses_a_stranger(tmp_path):
    """--auth: each SuperNode's key is registered through the SuperLink's Control API; a
    SuperNode whose key is not registered is refused, and the federation runs a job."""
    import time

    from fedslim.config import RunConfig
    from fedslim.deploy.certs import make_node_key
    from fedslim.deploy.local import LocalDeployment

    with LocalDeployment(tmp_path / "fed", 2, auth=True) as local:
        assert local.connected() == 2
        key, _ = make_node_key(tmp_path / "fed" / "keys", "stranger")  # never registered
        local.start_node(1, key=key, name="stranger")
        deadline = time.monotonic() + 60
        while "Failed to activate SuperNode" not in local.log("stranger"):
            assert time.monotonic() < deadline, local.log("stranger")[-2000:]
            time.sleep(0.5)
        assert local.connected() == 2
        run = RunConfig.of(num_server_rounds=1, num_examples=400, local_steps=2,
                           out=str(tmp_path / "run"))  # fmt: skip
        assert local.submit(run, timeout=300)["rounds"] == 1


def test_a_damaged_federation_record_is_a_clear_error(tmp_path):
    (tmp_path / "federation.json").write_text('{"nodes": 2, "tls"', encoding="utf-8")
    for command in ("status", "down", "run"):
        done = CliRunner().invoke(cli, ["deploy", command, "--dir", str(tmp_path)])
        assert done.exit_code == 1 and "is damaged" in " ".join(done.output.split()), command


def test_deploy_up_stopped_while_starting_leaves_nothing_running(tmp_path):
    """SIGTERM to `deploy up` once its SuperLink is spawned, before the SuperNodes have
    connected: what it started is stopped, not left running without a record."""
    import signal
    import subprocess
    import sys
    import time

    work = tmp_path / "fed"
    cmd = [sys.executable, "-m", "fedslim.cli", "deploy", "up", "--dir", str(work), "--insecure"]
    up = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while not (work / "supernode-1.log").exists():  # every process spawned, none connected
        assert up.poll() is None and time.monotonic() < deadline, up.stdout.read()
        time.sleep(0.02)
    up.send_signal(signal.SIGTERM)
    out, _ = up.communicate(timeout=60)
    assert up.returncode == 128 + signal.SIGTERM, out
    assert "up: SuperLink" not in out
    deadline = time.monotonic() + 15
    while _processes_in(work) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _processes_in(work)
