"""Write the OpenAPI document that Powertools generates from the API's routes: docs/openapi.json."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "functions"))

from autoblock.handlers.api import openapi_document

target = Path(__file__).resolve().parents[1] / "docs" / "openapi.json"
target.write_text(json.dumps(json.loads(openapi_document()), indent=2) + "\n")
print(f"wrote {target}")
