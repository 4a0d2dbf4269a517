"""Translations from the registry onto serving stacks: directory sync for filesystem loaders
(vLLM's filesystem resolver, LoRAX's `local` source, SGLang's `--lora-paths`) and a vLLM
`LoRAResolver` plugin. Built on the RegistryClient interface only."""
