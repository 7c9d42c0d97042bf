"""Files in and out: checkpoints (safetensors weights and a typed JSON sidecar, never unpickled;
:mod:`.checkpoint`) and atomic writes (:mod:`.atomic`)."""
