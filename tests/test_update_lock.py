"""The update lock: the runtime's spill-queue writes hold it (never waiting), the flash agent waits for it with a
timeout before stopping the runtime. Real flock on real files; Python 3.6 code on both sides."""

import fcntl
import os
import threading
import time

from edge_sdk.deploy import agent
from edge_sdk.runtime.delivery_queue import DeliveryQueue
from edge_sdk.runtime.update_lock import UpdateLock, lock_path_for


def test_spill_writes_hold_the_lock_and_never_wait_for_an_update(tmp_path):
    health = tmp_path / "run" / "health.json"
    health.parent.mkdir()
    lock = UpdateLock(lock_path_for(str(health)))
    assert lock.path == str(tmp_path / "run" / "update.lock")
    queue = DeliveryQueue(100, memory_limit=1, spill_dir=str(tmp_path / "spill"), guard=lock)
    for i in range(4):
        queue.put("t", b"m%d" % i)
    assert lock.held == 3 and queue.spilled == 3  # the first message stays in memory
    # an update holds the lock exclusively: the runtime goes on unlocked instead of stalling the video
    fd = os.open(lock.path, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        queue.put("t", b"m4")
        assert lock.held == 3 and queue.spilled == 4
    finally:
        os.close(fd)
    assert [queue.pop()[1] for _ in range(5)] == [b"m0", b"m1", b"m2", b"m3", b"m4"]


def hold_shared(path, seconds, entered, finished):
    with UpdateLock(path) as lock:
        assert lock.held == 1
        entered.set()
        time.sleep(seconds)
        finished.set()  # the end of the work that must not be cut


def test_agent_waits_for_the_lock_then_goes_on_after_its_timeout(tmp_path):
    layout = agent.Layout(str(tmp_path / "root"), "/")
    os.makedirs(layout.path("run"))
    path = layout.path(agent.UPDATE_LOCK_FILE)
    assert agent.wait_update_lock(layout, 5) is None  # nobody holds it

    entered, finished = threading.Event(), threading.Event()
    holder = threading.Thread(target=hold_shared, args=(path, 0.5, entered, finished))
    holder.start()
    entered.wait(5)
    message = agent.wait_update_lock(layout, 30)
    assert message.startswith("waited") and finished.is_set()  # the work in progress finished first
    holder.join()

    entered.clear()
    finished.clear()
    holder = threading.Thread(target=hold_shared, args=(path, 1, entered, finished))
    holder.start()
    entered.wait(5)
    assert "still holds its update lock after 0s; going on" in agent.wait_update_lock(layout, 0.2)
    assert not finished.is_set()
    holder.join()
