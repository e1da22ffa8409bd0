"""The `run` verb: image + options → a bundle on disk → start → clean up."""
import os

from minirun.image.embedded import ensure_embedded, is_embedded
from minirun.image.store import Store
from minirun.runtime import container
from minirun.runtime.options import RunOptions, build_spec
from minirun.runtime.start import start


def load_image(store: Store, ref):
    if is_embedded(ref):
        ensure_embedded(store, ref)
    return store.load(ref)


def run(store: Store, image_ref, opts: RunOptions):
    """Run a container in the foreground; returns its exit status."""
    image = load_image(store, image_ref)
    cid = container.new_id()
    bundle = os.path.join(store.containers, cid)
    spec = build_spec(opts, image, cid, bundle)   # every check happens here

    container.sweep_orphans(store)
    container.create_bundle(store, cid, {"image": image_ref, "image_id": image.id,
                                         "name": spec.name, "auto_remove": opts.rm})
    try:
        container.write_etc_files(bundle, spec.hostname)
        return start(spec)
    finally:
        if opts.rm:
            container.remove_bundle(bundle)
