"""Reading what users push, without torch: paths, pickles, safetensors headers, PEFT configs."""
