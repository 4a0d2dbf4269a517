"""Before an AdapterServer loads a tensor: what mixed batches can run (from the version's recorded
facts, before a byte is downloaded), then the push checks on the pulled files and the fit check
against the served base (the same rules and error codes as push).

Why the fit check waits for the download: it needs the adapter's tensor shapes (each LoRA module's
in/out features, from the safetensors header). The version's record (VersionInfo) carries its
config, file sizes and digests, its trainable parameter count and the fingerprint of the base it
was linked to, but not those shapes (the registry keeps them in `version_modules`, which no client
call returns), and the client fetches whole blobs only (no byte ranges to read just a header). A
linked fingerprint equal to the served base's would prove the fit, but never a misfit (another base
can share the shapes). So the files are pulled into the verified cache, and the check reads the
config and the safetensors header: no tensor is loaded before it passes."""

from __future__ import annotations

from pathlib import Path

from registry.client.transfer import CLIENT_LIMITS
from registry.entities import VersionInfo
from registry.errors import NotServable
from registry.formats.compatibility import BaseView, check_fit, fit_refusal
from registry.formats.folder import local_reader
from registry.formats.inspect import AdapterFacts, inspect_files
from registry.formats.manifest import FileEntry


def check_servable(info: VersionInfo, folder: Path, base: BaseView) -> AdapterFacts:
    """Read the version's config and safetensors header from `folder` (its verified files) and
    refuse what cannot run on `base`; returns the facts read.

    Raises:
        FitRefused subclass: the first fit problem's code (as push), every problem listed.
        NotServable: fits, but PEFT's mixed-batch inference cannot run it.
    """
    ref = f"{info.repo}:{info.version}"
    entries = [FileEntry(f.path, f.size, f.sha256) for f in info.files]
    facts = inspect_files(
        entries, local_reader([(f.path, folder / f.path) for f in info.files]), CLIENT_LIMITS
    )
    problems = check_fit(facts.config, facts.tensors, base)
    if problems:
        raise fit_refusal(problems, prefix=f"{ref}: ", base=base.label, ref=ref)
    check_runnable(ref, facts.config.peft_type, facts.config.use_dora)
    return facts


def check_runnable(ref: str, peft_type: str, use_dora: bool) -> None:
    """Refuse what PEFT's mixed-batch inference cannot run: called with the version's recorded
    facts before downloading, and with the config read from its files before loading.

    Raises:
        NotServable: not LoRA, or DoRA.
    """
    if peft_type != "LORA":
        raise NotServable(
            f"{ref} is a {peft_type} adapter; mixed-batch serving runs LoRA adapters only", ref=ref
        )
    if use_dora:
        raise NotServable(
            f"{ref} uses DoRA, which PEFT's mixed-batch inference (adapter_names) refuses; "
            "merge it into the base (`adapters export`) to serve it",
            ref=ref,
        )
