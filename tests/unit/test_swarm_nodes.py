"""Where a swarm server runs (spawner/swarm_nodes.py), on documents shaped as the Docker Engine
API returns them (recorded from the multi-node test swarm of tests/e2e/swarm_env.py, engine
20.10; ids shortened, fields the functions do not read left out)."""

from __future__ import annotations

from datetime import datetime, timezone

from jupyterhub_lab_ext.spawner.swarm_nodes import (
    current_task,
    ended_within,
    listen_ip,
    node_address,
    task_alive,
)


def _task(task_id, node, desired, state, index, updated="2026-12-03T19:20:00.0Z", created=None):
    return {
        "ID": task_id,
        "Version": {"Index": index},
        "CreatedAt": created or f"2026-12-03T19:19:{index:02d}.123456789Z",
        "UpdatedAt": updated,
        "ServiceID": "q3v9n2",
        "Slot": 1,
        "NodeID": node,
        "Status": {
            "Timestamp": updated,
            "State": state,
            "Message": state,
            "ContainerStatus": {"ContainerID": f"c-{task_id}", "PID": 4242, "ExitCode": 0},
        },
        "DesiredState": desired,
    }


def _node(node_id, addr, manager_addr=None, label="n1"):
    node = {
        "ID": node_id,
        "Version": {"Index": 9},
        "Spec": {"Labels": {"jhle.node": label}, "Role": "worker", "Availability": "active"},
        "Description": {"Hostname": "host", "Engine": {"EngineVersion": "20.10.24+dfsg1"}},
        "Status": {"State": "ready", "Addr": addr},
    }
    if manager_addr is not None:
        node["Spec"]["Role"] = "manager"
        node["ManagerStatus"] = {"Leader": True, "Reachability": "reachable", "Addr": manager_addr}
    return node


MANAGER = _node("8wprqb", "10.232.96.2", "10.232.96.2:2377")
WORKER = _node("wa5j2h", "10.232.96.3", label="n2")


def test_the_running_task_is_current():
    tasks = [_task("t1", "wa5j2h", "running", "running", 21)]
    assert current_task(tasks)["ID"] == "t1"


def test_a_restarted_task_replaces_the_one_that_failed():
    # swarm keeps the failed task (desired state shutdown) next to its replacement
    old = _task("t1", "8wprqb", "shutdown", "failed", 30)
    new = _task("t2", "wa5j2h", "running", "running", 35)
    assert current_task([old, new])["ID"] == "t2"
    assert current_task([new, old])["ID"] == "t2"


def test_a_rescheduled_task_still_starting_is_current_not_the_old_one():
    old = _task("t1", "8wprqb", "shutdown", "shutdown", 40)
    new = _task("t2", "wa5j2h", "running", "preparing", 41)
    assert current_task([old, new])["ID"] == "t2"


def test_of_two_tasks_meant_to_run_the_running_one_wins_then_the_newest():
    starting = _task("t3", "wa5j2h", "running", "starting", 50)
    running = _task("t2", "8wprqb", "running", "running", 45)
    assert current_task([starting, running])["ID"] == "t2"
    newer = _task("t4", "wa5j2h", "running", "running", 52)
    assert current_task([running, newer, starting])["ID"] == "t4"


def test_with_no_task_meant_to_run_the_newest_tells_why():
    failed = _task("t1", "wa5j2h", "shutdown", "failed", 12)
    rejected = _task("t2", "wa5j2h", "shutdown", "rejected", 14)
    assert current_task([failed, rejected])["ID"] == "t2"
    assert current_task([]) is None


def test_node_address_is_the_status_address():
    assert node_address(WORKER) == "10.232.96.3"
    assert node_address(MANAGER) == "10.232.96.2"


def test_a_manager_reporting_0000_is_reached_at_its_manager_address():
    manager = _node("8wprqb", "0.0.0.0", "10.232.96.2:2377")
    assert node_address(manager) == "10.232.96.2"
    ipv6 = _node("8wprqb", "", "[fd00::2]:2377")
    assert node_address(ipv6) == "fd00::2"


def test_a_node_without_any_address_has_none():
    assert node_address(_node("x", "0.0.0.0")) is None
    assert node_address(_node("x", "0.0.0.0", "0.0.0.0:2377")) is None


def test_one_node_swarm_on_loopback_keeps_listening_on_loopback():
    local = _node("8wprqb", "127.0.0.1", "127.0.0.1:41234")
    assert listen_ip("127.0.0.1", [local]) == "127.0.0.1"


def test_a_swarm_with_nodes_off_loopback_listens_on_the_node():
    assert listen_ip("127.0.0.1", [MANAGER, WORKER]) == "0.0.0.0"
    assert listen_ip("127.0.0.1", [MANAGER]) == "0.0.0.0"


def test_a_routable_listen_address_is_kept():
    assert listen_ip("0.0.0.0", [MANAGER, WORKER]) == "0.0.0.0"
    assert listen_ip("10.232.96.3", [MANAGER, WORKER]) == "10.232.96.3"


def test_a_task_on_its_way_to_running_is_alive():
    for state in ("new", "pending", "assigned", "accepted", "preparing", "ready", "starting"):
        assert task_alive(_task("t2", "wa5j2h", "running", state, 41)), state
    assert task_alive(_task("t2", "wa5j2h", "running", "running", 42))


def test_a_task_that_ended_or_is_meant_to_stop_is_not_alive():
    for state in ("complete", "failed", "rejected", "shutdown", "orphaned", "remove"):
        assert not task_alive(_task("t1", "wa5j2h", "running", state, 41)), state
    assert not task_alive(_task("t1", "wa5j2h", "shutdown", "running", 43))


def test_the_replacement_is_current_though_the_failed_task_changed_later():
    # the failed task's version grows as its status is updated after the replacement was made
    old = _task("t1", "wa5j2h", "running", "failed", 60, created="2026-12-03T19:45:01.0Z")
    new = _task("t2", "wa5j2h", "running", "ready", 58, created="2026-12-03T19:45:43.5Z")
    assert current_task([old, new])["ID"] == "t2"


NOW = datetime(2026, 12, 3, 19, 45, 46, tzinfo=timezone.utc)


def test_a_task_that_just_ended_may_still_be_replaced():
    failed = _task("t1", "wa5j2h", "running", "failed", 60)
    failed["Status"]["Timestamp"] = "2026-12-03T19:45:43.402255892Z"
    assert ended_within(failed, 8, NOW)
    assert not ended_within(failed, 2, NOW)


def test_a_task_long_ended_or_alive_is_not_waited_for():
    failed = _task("t1", "wa5j2h", "running", "failed", 60)
    failed["Status"]["Timestamp"] = "2026-12-03T19:30:00Z"
    assert not ended_within(failed, 8, NOW)
    running = _task("t2", "wa5j2h", "running", "running", 61)
    running["Status"]["Timestamp"] = "2026-12-03T19:45:45Z"
    assert not ended_within(running, 8, NOW)
    failed["Status"]["Timestamp"] = "not a time"
    assert not ended_within(failed, 8, NOW)


def test_a_task_prepared_to_replace_a_drained_one_is_current_and_alive():
    # draining a node: the new task is prepared (desired "ready") while the old one stops
    old = _task("t1", "8wprqb", "shutdown", "running", 70)
    new = _task("t2", "wa5j2h", "ready", "ready", 71)
    assert current_task([old, new])["ID"] == "t2"
    assert task_alive(new)
