"""The Python client (clients/python) on a client machine of the lab: run by the tests in the
client namespace, with LABHOST_NS and LABHOST_SECRET_FILE set and clients/python on
PYTHONPATH. Prints one JSON object per line.

    py_client.py calls NAME...   {"names": {name: address}, "calls": {NAME: wavelength}}
                                 (every NAME located by name, then asked its wavelength)
    py_client.py hold NAME...    locks every NAME (one connection each), prints
                                 {"locked": {NAME: [holder, yours]}}, waits for a line on
                                 stdin (or its end), unlocks, prints {"released": [NAME...]}
    py_client.py discover SECONDS [INSTANCE SERVICE [TLS_CA]]
                                 {"discovered": [entry...]}: labhost.discover(SECONDS), each
                                 LanDaemon as a dict with its lab_address(); with INSTANCE and
                                 SERVICE, also "wavelength": that service, reached through
                                 entry.connect() (the secret from LABHOST_SECRET_FILE, and the
                                 CA file TLS_CA for a daemon that serves TLS)
"""

import dataclasses
import json
import sys

import labhost

TIMEOUT = 10.0


def main(argv):
    command, names = argv[1], argv[2:]
    if command == "calls":
        listed = {r.name: r.address for r in labhost.names(timeout=TIMEOUT)}
        calls = {}
        for name in names:
            with labhost.locate(name, timeout=TIMEOUT) as proxy:
                calls[name] = proxy.wavelength()
        print(json.dumps({"names": listed, "calls": calls}), flush=True)
        return 0
    if command == "hold":
        proxies = [labhost.locate(name, timeout=TIMEOUT, client_name="bob") for name in names]
        try:
            locked = {}
            for name, proxy in zip(names, proxies):
                status = proxy.lock()
                locked[name] = [status.holder_name, status.yours]
            print(json.dumps({"locked": locked}), flush=True)
            sys.stdin.readline()
            for proxy in proxies:
                proxy.unlock()
            print(json.dumps({"released": names}), flush=True)
        finally:
            for proxy in proxies:
                proxy.close()
        return 0
    if command == "discover":
        found = labhost.discover(timeout=float(names[0]))
        out = {"discovered": [dict(dataclasses.asdict(d), lab_address=d.lab_address()) for d in found]}
        if len(names) >= 3:
            (entry,) = [d for d in found if d.name == names[1]]
            options = {"tls_ca": names[3]} if len(names) > 3 else {}
            with entry.connect(names[2], timeout=TIMEOUT, **options) as proxy:
                out["wavelength"] = proxy.wavelength()
        print(json.dumps(out), flush=True)
        return 0
    print("unknown command " + command, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
