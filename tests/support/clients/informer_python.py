"""A list + watch reflector with Debian's python3-kubernetes on the default namespace's configmaps,
written the way its users write one (the library has no informer): list, watch from the list's
resourceVersion, re-watch when a watch ends, relist on 410 Gone or an error. Prints one JSON line
per event; on stdin "dump <tag>" prints the cache, "list <tag>" does a plain LIST.
Usage: python3 informer_python.py <kubeconfig>"""
import json
import sys
import threading
import time

from kubernetes import client, config, watch

out_lock = threading.Lock()
cache = {}
cache_lock = threading.Lock()


def out(o):
    with out_lock:
        sys.stdout.write(json.dumps(o) + "\n")
        sys.stdout.flush()


def data(o):
    return json.dumps(o.data or {}, separators=(",", ":"))


def stdin_loop(v1):
    for line in sys.stdin:
        parts = line.split()
        if parts and parts[0] == "dump":
            with cache_lock:
                items = [{"name": n, "data": d} for n, d in sorted(cache.items())]
            out({"event": "dump", "tag": parts[1] if len(parts) > 1 else "", "items": items})
        elif parts and parts[0] == "list":
            # A plain LIST through the same client, from the command thread.
            try:
                lst = v1.list_namespaced_config_map("default", _request_timeout=10)
                out({"event": "list", "tag": parts[1], "names": sorted(o.metadata.name for o in lst.items)})
            except Exception as e:  # noqa: BLE001
                out({"event": "list", "tag": parts[1], "error": str(e)[:300]})


def main():
    config.load_kube_config(config_file=sys.argv[1])
    v1 = client.CoreV1Api()
    threading.Thread(target=stdin_loop, args=(v1,), daemon=True).start()
    rv = ""
    while True:
        try:
            if not rv:
                lst = v1.list_namespaced_config_map("default", _request_timeout=10)
                fresh = {o.metadata.name: data(o) for o in lst.items}
                with cache_lock:
                    for n in [n for n in cache if n not in fresh]:
                        del cache[n]
                        out({"event": "delete", "name": n})
                    for n, d in fresh.items():
                        if cache.get(n) != d:
                            out({"event": "add" if n not in cache else "update", "name": n, "data": d})
                        cache[n] = d
                rv = lst.metadata.resource_version
                out({"event": "listed", "rv": rv})
            w = watch.Watch()
            for ev in w.stream(v1.list_namespaced_config_map, "default", resource_version=rv,
                               allow_watch_bookmarks=True, timeout_seconds=60, _request_timeout=(10, 60)):
                o, t = ev["object"], ev["type"]
                if t == "ERROR":
                    raw = ev.get("raw_object") or {}
                    if raw.get("code") == 410:
                        rv = ""
                        break
                    continue
                if t == "BOOKMARK":  # the library leaves a bookmark's object a dict
                    rv = (ev.get("raw_object") or {}).get("metadata", {}).get("resourceVersion") or rv
                    continue
                rv = o.metadata.resource_version or rv
                n = o.metadata.name
                with cache_lock:
                    if t == "DELETED":
                        cache.pop(n, None)
                        out({"event": "delete", "name": n})
                    else:
                        out({"event": "add" if n not in cache else "update", "name": n, "data": data(o)})
                        cache[n] = data(o)
            out({"event": "watch-ended"})
        except Exception as e:  # noqa: BLE001 - any failure: relist after a short pause
            code = getattr(e, "status", None)
            out({"event": "error", "message": (str(code) + " " if code else "") + str(e)[:300]})
            rv = ""
            time.sleep(0.3)


main()
