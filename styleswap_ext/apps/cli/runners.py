"""What each command runs: ``stylize`` (a file or a directory, under torchrun too), ``video``, ``demo``,
``weights``, ``train-decoder``; the checks before any work and the one-line error of a failure.
Torch and the pipeline are imported inside the functions, once the arguments are checked."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import List

from ..._util import allocator
from ..._util import stages as _stages
from .arguments import DEMO_CONTENT, DEMO_LR, DEMO_SIZE, DEMO_STYLE, UsageError, _say_error

def _info(args, message: str) -> None:
    if not args.quiet:
        sys.stderr.write(message + "\n")
        sys.stderr.flush()


def _is_oom(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, (MemoryError, torch.cuda.OutOfMemoryError)):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text
                                              or "not enough memory" in text)


def _output_for(content: Path, out_dir: Path) -> Path:
    from PIL import Image

    ext = content.suffix.lower()
    from ...pipeline.image_io import writes_rgb

    fmt = Image.registered_extensions().get(ext)
    if fmt is None or fmt not in Image.SAVE or not writes_rgb(fmt):
        ext = ".png"
    return out_dir / f"{content.stem}_stylized{ext}"


def _files_read(args) -> List[Path]:
    """Every file a run reads besides its images: masks and weights files (an output must be none of them)."""
    from ...models import ENV_VGG_WEIGHTS

    named = [getattr(args, "content_mask", None), *(getattr(args, "style_mask", None) or []),
             args.vgg_weights, os.environ.get(ENV_VGG_WEIGHTS), args.decoder_weights]
    return [Path(p) for p in named if p]


def _check_outputs(jobs, inputs, out_dir=None, args=None) -> None:
    """Before any work (styleswap_ext/_util/outputs.py): no output is an input (an image, or with ``args``
    any other file the run reads), no two inputs share an output name, and the output folder takes
    new files."""
    from ..._util import outputs as _outputs

    inputs = list(inputs) + (_files_read(args) if args is not None else [])
    try:
        _outputs.check_distinct_outputs(jobs)
        for _, dst in jobs:
            _outputs.check_not_an_input(dst, inputs)
        if out_dir is not None:
            _outputs.check_writable_dir(_outputs.nearest_existing_dir(out_dir))
        else:
            for _, dst in jobs:
                _outputs.check_writable_dir(dst.parent, dst)
    except ValueError as e:
        raise UsageError(str(e)) from None


def _check_output_file(path: Path) -> None:
    from ...pipeline.image_io import output_format

    try:
        output_format(path)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if path.is_dir():
        raise UsageError(f"output {str(path)!r} is a directory; give a file name such as out.png")
    if not path.parent.is_dir():
        raise UsageError(f"output directory does not exist: {str(path.parent)!r}")
    from ..._util.outputs import check_writable_dir

    try:
        check_writable_dir(path.parent, path)
    except ValueError as e:
        raise UsageError(str(e)) from None


def _load_styles_and_models(args):
    """The style images, the encoder and (when the method needs one) the decoder, in the order that
    fails fastest: images first, then weights."""
    from ...pipeline.image_io import load_image
    from ...models import load_decoder, load_encoder

    styles = [load_image(s) for s in args.styles]
    decoder = None
    if args.method == "decoder" or args.init == "decoder":
        decoder = load_decoder(args.decoder_weights)
    encoder = load_encoder(args.vgg_weights, progress=args.progress)
    # said once done: a missing file or weights fails with its one error line before any stage line
    _stages.stage("loaded the style images and the models")
    return styles, encoder, decoder


def _run_stylize(args) -> int:
    _check_common(args)  # before the imports below, which load torch
    from ...pipeline import distributed, image_io
    from ... import pipeline
    from ...pipeline.overlap import BackgroundSaver, Prefetcher

    content = Path(args.content)
    out = Path(args.output)
    if content.is_dir():
        inputs = _directory_images(content, out, "CONTENT is a directory")
        jobs = [(p, _output_for(p, out)) for p in inputs]
    else:
        if out.is_dir():
            jobs = [(content, _output_for(content, out))]
        else:
            _check_output_file(out)
            jobs = [(content, out)]
        image_io.probe_image(content)  # fail fast on a missing or non-image file, before any model is loaded
    _check_masks(args, [src for src, _ in jobs])
    _check_outputs(jobs, [src for src, _ in jobs] + [Path(s) for s in args.styles],
                   out if content.is_dir() else None, args)

    many = len(jobs) > 1
    w = distributed.world()
    if w.distributed:  # torchrun: this process's share of the files, each written by one process
        jobs = distributed.shard(jobs, w)
    jobs, replacing = _existing_outputs(args, jobs, content.is_dir())  # after sharding: each rank sees its own
    if not jobs and args.skip_existing:
        return 0
    device = distributed.device_for(pipeline.resolve_device(args.device), w)
    if not many:  # a plan that cannot fit fails now, not after the models load (stylize checks it again)
        from ...pipeline import memory_plan
        from ...pipeline.settings import StylizeSettings

        plan = memory_plan.check_settings(StylizeSettings.from_args(args).checked(args.styles, device=device),
                                          jobs[0][0])
        _keep_freed_memory_if_room(device, plan)
    from tqdm.auto import tqdm

    failures = 0

    def failed(exc, src):  # one image's failure: the only image's is raised, one of many's reported
        nonlocal failures
        if not many:
            raise exc
        failures += 1
        bar.clear()
        _say_error(_describe(exc, src))

    def saved(dst, exc):
        if exc is not None:
            failed(exc, dst)
        elif dst in replacing:
            bar.clear()
            _info(args, f"replaced {dst}")

    # Contents are decoded one ahead in the background (the first one while the models load and the
    # style bank is built) and results saved behind (styleswap_ext/pipeline/overlap.py). image_io.load_image
    # is looked up per call, so that it can be patched.
    with Prefetcher(lambda job: image_io.load_image(job[0]), jobs) as contents, \
            BackgroundSaver(image_io.save_image) as saver:
        styles, encoder, decoder = _load_styles_and_models(args)
        if content.is_dir():
            out.mkdir(parents=True, exist_ok=True)
        if not jobs:
            _info(args, f"rank {w.rank} of {w.size}: no files left for this process")
            return 0
        bank = _style_bank(args, styles, encoder, device)
        bar = tqdm(contents, total=len(jobs), desc="images", unit="img", file=sys.stderr,
                   disable=not args.progress or not many, dynamic_ncols=True)
        for (src, dst), loaded in bar:
            try:
                result = _stylize_one(args, loaded.result(), bank, encoder, decoder)
            except Exception as e:  # per image: report, go on with the others
                failed(e, src)
                continue
            for done in saver.submit(dst, result, dst):
                saved(*done)
        for done in saver.finish():
            saved(*done)
    if failures:
        _say_error(f"{failures} of {len(jobs)} images failed")
        return 1
    if not many:
        _info(args, f"wrote {jobs[0][1]}{_stages.elapsed()}")
    else:
        who = f" (rank {w.rank} of {w.size})" if w.distributed else ""
        _info(args, f"wrote {len(jobs)} images to {out}{who}{_stages.elapsed()}")
    return 0


def _check_masks(args, contents) -> None:
    """--content-mask / --style-mask before any model loads (styleswap_ext/pipeline/masks.py): given together,
    readable, one per style, at their images' aspect ratios, and every label of each content's
    patches the label of some style patch of a weighted style, on the feature grids the run uses (a
    usage error otherwise). A content label that vanishes at the feature resolution is one warning
    line, here (the pipeline's own check of each image then stays quiet)."""
    content_mask, style_masks = getattr(args, "content_mask", None), getattr(args, "style_mask", None)
    if content_mask is None and style_masks is None:
        return
    import warnings

    from ...pipeline import masks
    from ..._util.choices import FEATURE_STEP
    from ...pipeline.image_io import ImageLoadError, image_size

    names = masks.CLI_NAMES
    try:
        masks.check_given(content_mask, style_masks, names)
        loaded = masks.load_masks(content_mask, style_masks, len(args.styles), names)
        style_hws = [image_size(p) for p in args.styles]
        for content in contents:
            try:
                content_hw = image_size(content)
            except ImageLoadError:
                if len(contents) == 1:
                    raise
                continue  # one unreadable image of a directory is reported when its turn comes
            masks.check_regions(content_mask, style_masks, content_hw, style_hws, patch_size=args.patch_size,
                                stride=args.stride, downsampling=FEATURE_STEP, style_weights=args.style_weights,
                                content_size=args.content_size, style_size=args.style_size, names=names,
                                loaded=loaded)
    except masks.MaskError as e:
        raise UsageError(str(e)) from None
    warnings.filterwarnings("ignore", category=masks.MaskWarning)


def _style_bank(args, styles, encoder, device):
    from ... import pipeline
    from ..._util.text import plural

    what = "the search is chosen per content" if args.search == "auto" else f"{args.search} search"
    _stages.stage(f"encoding {plural(len(styles), 'style')} into the patch bank ({what})")

    bank = pipeline.StyleBank(styles, encoder, style_size=args.style_size, style_weights=args.style_weights,
                              patch_size=args.patch_size, stride=args.stride, device=device,
                              precision=args.precision, tile_size=args.tile_size, progress=args.progress,
                              search=args.search, style_masks=getattr(args, "style_mask", None))
    bank.on_search = lambda choice: _info(args, choice.line())  # --search auto: which one, and why
    return bank


def _stylize_one(args, content, bank, encoder, decoder, progress=None, temporal=None):
    from ... import pipeline

    return pipeline.stylize(
        content, bank, method=args.method, content_size=args.content_size, alpha=args.alpha,
        preserve_color=args.preserve_color, iters=args.iters, init=args.init, lr=args.lr,
        tv_weight=args.tv_weight, encoder=encoder, decoder=decoder,
        progress=args.progress if progress is None else progress, tile_size=args.tile_size,
        content_mask=getattr(args, "content_mask", None), temporal=temporal,
    )


def _existing_outputs(args, jobs, directory_mode: bool):
    """``(jobs to run, outputs they will replace)``. With --skip-existing a job whose output exists is
    left out (one line says how many: an interrupted batch resumes); without it, in directory mode,
    each replaced output gets one line when it is written (the set returned), so a re-run replaces
    nothing silently."""
    existing = {dst for _, dst in jobs if dst.exists()}
    if getattr(args, "skip_existing", False):
        if existing:
            what = f"{len(existing)} of {len(jobs)} outputs" if directory_mode else str(jobs[0][1])
            _info(args, f"skipping {what}: already there (--skip-existing)")
        return [job for job in jobs if job[1] not in existing], set()
    return jobs, (existing if directory_mode else set())


def _is_image_name(path: Path) -> bool:
    from PIL import Image

    return path.suffix.lower() in Image.registered_extensions()


def _directory_images(src: Path, out: Path, why: str) -> list:
    """The image files of directory ``src``, sorted by name, for a run whose output ``out`` is therefore a
    directory (``why`` says so in the messages): ``out`` must be none of a file, nor named like one."""
    from ...pipeline.image_io import ImageLoadError, is_image_path

    if out.exists() and not out.is_dir():
        raise UsageError(f"{why}, so -o must be a directory too, but {str(out)!r} is a file")
    _check_names_a_directory(out, why)
    files = sorted(p for p in src.iterdir() if is_image_path(p))
    if not files:
        raise ImageLoadError(f"no image files in directory: {src}")
    return files


def _check_names_a_directory(out: Path, why: str) -> None:
    """An output that is to be a directory (and will be created) must not be named like a file:
    ``-o notadir.png`` would otherwise become a directory of that name."""
    from ...pipeline.video import is_video_path

    if not out.exists() and (_is_image_name(out) or is_video_path(out)):
        raise UsageError(f"{why}, so -o must be a directory, but {str(out)!r} names a file; "
                         "give a directory name such as styled_frames/")


def _check_common(args) -> None:
    """The stylisation settings (styleswap_ext/pipeline/settings.py, shared with the studio), then video's own."""
    from ...pipeline.settings import StylizeSettings, cli_name

    try:
        StylizeSettings.from_args(args).check(len(args.styles), name=cli_name)
    except ValueError as e:
        raise UsageError(str(e)) from None


def _run_video(args) -> int:
    _check_common(args)  # before the imports below, which load torch
    from ...pipeline import distributed, video
    from ... import pipeline

    src, out = Path(args.input), Path(args.output)
    frames_dir = src.is_dir()
    if frames_dir:
        files = _directory_images(src, out, "IN is a directory of frames")
        files = files[:args.max_frames]  # None: all
    else:
        if not src.is_file():
            raise UsageError(f"input not found: {str(src)!r}")
        if out.is_dir():
            raise UsageError(f"output {str(out)!r} is a directory; give a video file name such as out.mp4")
        if not out.suffix:
            raise UsageError(f"output {str(out)!r} has no extension: use e.g. .mp4, .mkv or .webm")
        if _is_image_name(out) and not video.is_video_path(out):
            raise UsageError(f"IN is a video file, so -o must be a video file too, but {str(out)!r} names an "
                             "image: use e.g. .mp4, .mkv or .webm (a directory of frames gives a directory)")
        if not out.parent.is_dir():
            raise UsageError(f"output directory does not exist: {str(out.parent)!r}")
        video.require_av()
        if args.codec is not None:
            import av

            if args.codec not in av.codecs_available:
                raise UsageError(f"--codec {args.codec!r} is not available in this FFmpeg build")
        _check_encoder(args, out)
    # frames keep their names, so a frames directory written into itself would replace its inputs
    _check_outputs([(p, out / p.name) for p in files] if frames_dir else [(src, out)],
                   (files if frames_dir else [src]) + [Path(s) for s in args.styles], out if frames_dir else None,
                   args)
    w = distributed.world()
    if frames_dir and w.distributed:
        files = distributed.shard(files, w)
    elif w.distributed and w.rank > 0:
        _info(args, f"rank {w.rank}: a video file is done by rank 0 only")
        return 0
    jobs, replacing = _existing_outputs(args, [(p, out / p.name) for p in files] if frames_dir else [(src, out)],
                                        frames_dir)
    if not jobs and args.skip_existing:
        return 0
    if frames_dir:
        files = [p for p, _ in jobs]
    device = distributed.device_for(pipeline.resolve_device(args.device), w)
    styles, encoder, decoder = _load_styles_and_models(args)
    bank = _style_bank(args, styles, encoder, device)  # encoded once, reused by every frame

    weight = pipeline.DEFAULT_TEMPORAL_WEIGHT if args.temporal_weight is None else args.temporal_weight
    temporal = pipeline.TemporalState(weight)

    planned = []

    def frame_fn(t):  # frames in order; under torchrun a process's 'previous' is the frame `size` before
        if not planned:  # the first frame gives the size: keep freed memory where the plan has room for it
            from ...pipeline import memory_plan
            from ...pipeline.settings import StylizeSettings

            planned.append(True)
            settings = StylizeSettings.from_args(args).checked(args.styles, device=device)
            _keep_freed_memory_if_room(device, memory_plan.check_settings(settings, t))
        return _stylize_one(args, t, bank, encoder, decoder, progress=False, temporal=temporal)

    if frames_dir:
        def saved(dst):
            if dst in replacing:
                _info(args, f"replaced {dst}")

        n = video.stylize_frames_dir(src, out, frame_fn, progress=args.progress, files=files, saved=saved)
        _info(args, f"wrote {n} frames to {out}{_stages.elapsed()}")
        return 0
    info = video.stylize_video(src, out, frame_fn, codec=args.codec, quality=args.crf,
                               max_frames=args.max_frames, progress=args.progress)
    audio = f", {info['audio_streams']} audio stream(s) copied" if info["audio_streams"] else ""
    _info(args, f"wrote {out} ({info['frames']} frames, {info['size'][0]}x{info['size'][1]}, "
                f"{info['fps']:.3g} fps, {info['codec']}{audio}){_stages.elapsed()}")
    return 0


def _check_encoder(args, out: Path) -> None:
    """--crf within its encoder's range, and --codec (or the container's default) able to write ``out``:
    usage errors naming what would work, before any work."""
    from ...pipeline import video

    codec = args.codec or video.default_codec(out)
    if codec in video.CRF_RANGE:
        lo, hi = video.CRF_RANGE[codec]
        if not lo <= args.crf <= hi:
            raise UsageError(f"--crf must be an integer in [{lo}, {hi}] for {codec}, got {args.crf}")
    problem = video.encoder_problem(out, codec, args.crf)
    if problem is not None:
        working = [c for c in video.SUGGESTED_CODECS if c != codec and video.encoder_problem(out, c) is None]
        raise UsageError(f"--codec {codec!r} cannot write {out.suffix} video ({problem}); use a video encoder "
                         f"such as {', '.join(working) or 'libx264'}")


def _keep_freed_memory_if_room(device, plan) -> None:
    """A CPU run with room for it keeps freed memory for reuse (_util/allocator.py: ~1.35x faster at
    1024 px, a higher peak): a single image, and a video from its first frame; a directory of images,
    whose sizes are not planned up front, does not."""
    from ...pipeline import memory_plan

    if device.type == "cpu" and plan is not None and allocator.worth_keeping(plan.total,
                                                                             memory_plan.available_bytes(device)):
        allocator.keep_freed_memory()


def _run_demo(args) -> int:
    from ... import pipeline
    from ...pipeline.image_io import save_image
    from ...models.loading import load_decoder, load_encoder, packaged_decoder_path  # loading.*: where tests replace them

    out = Path(args.output)
    _check_output_file(out)
    _check_outputs([(DEMO_CONTENT, out)], [DEMO_CONTENT, DEMO_STYLE], None, args)
    device = pipeline.resolve_device(args.device)
    decoder = None
    method = args.method
    if method is None:
        method = "decoder" if args.decoder_weights or packaged_decoder_path() is not None else "optimize"
    size = args.content_size or DEMO_SIZE[method]
    if method == "decoder":
        decoder = load_decoder(args.decoder_weights)  # NoTrainedDecoderError when none is installed
        _info(args, f"styleswap demo: one pass through the trained decoder, at {size} px "
                    f"on {device.type}")
    else:
        why = "" if args.method else "no trained decoder is installed, so "
        _info(args, f"styleswap demo: {why}using --method optimize "
                    f"({args.iters} iterations, lr {DEMO_LR}, at {size} px on {device.type})")
    encoder = load_encoder(args.vgg_weights, progress=args.progress)
    _stages.stage("loaded the models")
    start = time.perf_counter()
    bank = pipeline.StyleBank([DEMO_STYLE], encoder, style_size=args.style_size, device=device,
                              precision=args.precision, progress=args.progress)
    bank.on_search = lambda choice: _info(args, choice.line())  # search auto: which one, and why
    result = pipeline.stylize(
        DEMO_CONTENT, bank, method=method, content_size=size, iters=args.iters, lr=DEMO_LR, encoder=encoder,
        decoder=decoder, progress=args.progress,
    )
    save_image(result, out)
    _info(args, f"wrote {out} ({result.width}x{result.height} px) in {time.perf_counter() - start:.1f} s")
    return 0


def _run_weights(args) -> int:
    from ... import models

    if args.weights_command == "install":
        target = models.install_vgg_weights(args.path)
        _info(args, f"installed the VGG-19 weights (conv1_1-conv3_1, sha256 checked) in {target}")
        return 0
    st = models.vgg_weights_status()
    cache_state = {None: "absent", True: "present, sha256 checked", False: "present but NOT the expected weights"}
    print(f"cache: {st['cache']} ({cache_state[st['cache_ok']]})")
    where = {"env": f"${models.ENV_VGG_WEIGHTS} = {st['path']}", "cache": "the cache",
             "download": f"a download of {st['path']} (548 MB; needs the internet)"}[st["source"]]
    print(f"a run without --vgg-weights takes them from {where}")
    if st["source"] == "env" and not Path(st["path"]).expanduser().is_file():
        what = "is a directory" if Path(st["path"]).expanduser().is_dir() else "does not exist"
        print(f"but that file {what}: such a run fails; point ${models.ENV_VGG_WEIGHTS} at the weights file, "
              "or unset it")
    return 0


def _run_train(args) -> int:
    from ...pipeline.training import check_arguments, train

    try:
        check_arguments(args)
    except ValueError as e:
        raise UsageError(str(e)) from None
    train(args)
    return 0


def _describe(exc: BaseException, where=None) -> str:
    from ...pipeline.image_io import ImageLoadError
    from ...models import NoTrainedDecoderError, WeightsUnavailableError

    if _is_oom(exc):
        place = f" while processing {where}" if where else ""
        return (f"out of memory{place}: try a smaller --content-size / --style-size, a larger --stride, "
                "--precision bf16, or another --device")
    from ...pipeline.video import VideoDependencyError

    if isinstance(exc, (ImageLoadError, NoTrainedDecoderError, WeightsUnavailableError, VideoDependencyError)):
        return str(exc)
    if isinstance(exc, FileNotFoundError) and exc.filename is None:
        return str(exc)
    if isinstance(exc, OSError):
        name = exc.filename or where  # e.g. a full disk while writing an output: name that output
        target = f" {name}" if name else ""
        return f"{exc.strerror or exc}{':' + target if target else ''}"
    if isinstance(exc, (ValueError, TypeError, RuntimeError)):
        prefix = f"{where}: " if where else ""
        return f"{prefix}{exc}"
    return f"unexpected {type(exc).__name__}: {exc}"
