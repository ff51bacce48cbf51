import asyncio, signal
from tests.scaleout.test_shutdown import open_conversation

async def test_exit(sqlite_cluster, sim):
    (worker,) = sqlite_cluster.start()
    socket = await open_conversation(worker)
    await socket.send("Go on at length [sim tokens=2000 tps=30]")
    reply = socket.replies[await socket.first_reply()]
    await socket.wait_for(lambda: len(reply.text) > 30)
    worker.process.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(worker.process.wait, 10)
    print("EXITCODE", code)
