"""The quickstart seed job: runs once per tenant before its services start."""

import datetime
import os
import pathlib

data = pathlib.Path(os.environ["ARMILLARY_DATA_DIR"])
data.mkdir(parents=True, exist_ok=True)
stamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
(data / "seed.txt").write_text(f"seeded {os.environ.get('ARMILLARY_TENANT')} at {stamp}\n")
print(f"seeded {data}", flush=True)
