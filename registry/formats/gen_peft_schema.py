"""Regenerate peft_schema.json from the installed peft (imports torch; run by developers)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any


def schema_from_peft() -> dict[str, Any]:
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING
    from peft.utils import TaskType

    fields = {
        str(k.value): sorted(f.name for f in dataclasses.fields(cls))
        for k, cls in sorted(PEFT_TYPE_TO_CONFIG_MAPPING.items(), key=lambda kv: str(kv[0].value))
    }
    return {"task_types": sorted(str(t.value) for t in TaskType), "fields": fields}


if __name__ == "__main__":
    target = Path(__file__).with_name("peft_schema.json")
    target.write_text(json.dumps(schema_from_peft(), indent=1) + "\n", encoding="utf-8")
    print(f"wrote {target}")
