"""adapter-registry: a self-hosted registry for LoRA/PEFT adapters."""

__version__ = "0.1.0"
