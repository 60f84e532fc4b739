"""Send one small chat request to a gateway URL; exit non-zero unless it answers 200 with usage.

Run inside a gateway container (python3 -c "<this file>" URL): Ansible's proof that a replica
serves real requests, e.g. with a just-rotated key. Prints the usage, never any key.
"""

import json
import sys
import urllib.error
import urllib.request

url = sys.argv[1]
body = {"messages": [{"role": "user", "content": "ping"}], "max_tokens": 1}
request = urllib.request.Request(  # noqa: S310 - a fixed http://127.0.0.1 URL from Ansible
    url,
    data=json.dumps(body).encode(),
    headers={"Content-Type": "application/json", "X-Gateway-Client": "ansible-probe"},
)
try:
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
        answer = json.load(response)
except urllib.error.HTTPError as error:
    sys.exit(f"{url} answered HTTP {error.code}: {error.read()[:300].decode(errors='replace')}")
except OSError as error:
    sys.exit(f"{url} did not answer: {error}")
if not isinstance(answer.get("usage"), dict):
    sys.exit(f"{url} answered without usage: {json.dumps(answer)[:300]}")
print(json.dumps({"url": url, "model": answer.get("model"), "usage": answer["usage"]}))
