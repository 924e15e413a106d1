"""Sleep for ``seconds``, then answer ``{"slept": seconds}`` (subprocess JSON Lines protocol)."""

import json
import sys
import time

request = json.load(sys.stdin)
seconds = float(request["arguments"]["seconds"])
time.sleep(seconds)
sys.stdout.write(json.dumps({"result": {"slept": seconds}}) + "\n")
