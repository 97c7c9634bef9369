"""The authors' side of ``scripts/crosscheck_authors.py``: runs under THEIR Python, never imports the suite.

``scripts/crosscheck_authors.py`` copies this file into its work folder with a JSON of parameters and runs

    THEIR_PYTHON crosscheck_authors_side.py train PARAMS.json   # their main.run() for one recipe
    THEIR_PYTHON crosscheck_authors_side.py slice PARAMS.json   # one labeled and one unlabeled slice

with their checkout first on ``sys.path`` (their modules import each other by bare name). It only adds to
their code what a side-by-side run needs (``train``), each a monkeypatch of a module attribute of their
``main.py``, applied before ``main.run(main.get_args())``:

(a) ``setup``: their network is built and ``weights_init`` applied as they do (``main.py:41``), then the
    suite's exported initial weights are loaded into it (strict: every key of their ``ENet`` present); the
    optimiser built in ``setup`` holds the same parameter objects, so it trains the loaded values;
(b) ``get_loaders``: their datasets, transforms and bounds are kept; each DataLoader is replaced by a loader
    that yields the suite's exported batches (file names, per epoch) in this process. Their loaders shuffle
    with ``RandomSampler`` (``dataloader.py:116-119``), and every DataLoader iterator draws a base seed from
    the global torch RNG even without workers (which would shift the dropout stream); their 6 worker
    processes (``num_workers=batch_size + 5``) would also compete for the two cores the timings compare;
(c) ``do_epoch``: before each training epoch the global torch RNG is seeded with the suite's seed of that
    epoch (``suite.stages.checkpoint.epoch_seed``), the point where the suite reseeds, so both draw their
    dropout masks from the same stream; each call is timed (train and validation) into ``times.jsonl``.

(d) ``utils.imsave`` (scikit-image's, which ``save_images`` calls for each validation slice every epoch,
    ``utils.py:268-275``): the predicted class map is cast to uint8 first. It is int64; scikit-image >= 0.20
    hands arrays to imageio and PIL, which have no 64-bit integer PNG mode and raise. Class indices 0..3 fit.

Nothing else in their code needs changing for a current torch, numpy and PIL (checked with torch 2.14,
numpy 2.4, PIL 13, scikit-image 0.26): their ``utils.py``/``dataloader.py`` import scikit-image, which their
Python must provide (``resize`` is unused on this path).

Written for any Python 3.6+ (their code's era): no annotations, no newer syntax.
"""

import json
import sys
import time


def _load_params(path):
    with open(path) as f:
        params = json.load(f)
    sys.path.insert(0, params["authors"])
    return params


class ExportedOrderLoader:
    """What their ``do_epoch`` reads of a DataLoader (``dataset``, ``len()``, iteration), yielding given
    batches of file names: ``epochs[k]`` is the k-th pass's batches (``repeat``: the same ones each pass)."""

    def __init__(self, dataset, epochs, repeat=False):
        from torch.utils.data.dataloader import default_collate

        self.dataset = dataset
        self.collate = default_collate
        where = {name: i for i, name in enumerate(dataset.filenames)}
        missing = sorted({n for batches in epochs for b in batches for n in b} - set(where))
        if missing:
            sys.exit(
                f"the exported order names {len(missing)} file(s) absent from their dataset (first: "
                f"{missing[0]}); convert the data again"
            )
        self.epochs = [[[where[n] for n in b] for b in batches] for batches in epochs]
        self.repeat = repeat
        self.passes = 0

    def _current(self):
        if self.repeat:
            return self.epochs[0]
        if self.passes >= len(self.epochs):
            sys.exit(f"their run asked for pass {self.passes}; the exported order has {len(self.epochs)}")
        return self.epochs[self.passes]

    def __len__(self):
        return len(self._current())

    def __iter__(self):
        batches = self._current()
        self.passes += 1
        for b in batches:
            yield self.collate([self.dataset[i] for i in b])


def train(params):
    import torch

    torch.set_num_threads(1)
    import main as theirs  # their main.py (their checkout is first on sys.path)

    with open(params["order"]) as f:
        order = json.load(f)
    epochs = order["epochs"]

    real_setup = theirs.setup

    def setup(args, n_class):
        net, optimizer, device, loss_fns, loss_weights, scheduler = real_setup(args, n_class)
        state = torch.load(params["weights"], map_location=device)
        net.load_state_dict(state, strict=True)
        return net, optimizer, device, loss_fns, loss_weights, scheduler

    real_get_loaders = theirs.get_loaders

    def get_loaders(*args, **kwargs):
        train_loaders, val_loaders = real_get_loaders(*args, **kwargs)
        # loader 0: the labeled folder; loader 1 (Oracle): the unlabeled one (learn_size.make:158)
        passes = [[e["labeled"] for e in epochs], [e["unlabeled"] for e in epochs]]
        if len(train_loaders) > len(passes) or (len(train_loaders) == 2 and not all(passes[1])):
            sys.exit(f"their recipe has {len(train_loaders)} training loaders; the exported order lacks some")
        ours = [ExportedOrderLoader(lo.dataset, passes[i]) for i, lo in enumerate(train_loaders)]
        # validation: their PatientSampler's fixed grouping (one batch per volume), in this process
        val = [
            ExportedOrderLoader(
                lo.dataset, [[[lo.dataset.filenames[i] for i in b] for b in lo.batch_sampler]], True
            )
            for lo in val_loaders
        ]
        return ours, val

    real_do_epoch = theirs.do_epoch
    times = open(params["times"], "w")

    def do_epoch(mode, net, device, loaders, epc, *args, **kwargs):
        if mode == "train":
            torch.manual_seed(epochs[epc]["torch_seed"])
        t0 = time.perf_counter()
        out = real_do_epoch(mode, net, device, loaders, epc, *args, **kwargs)
        times.write(json.dumps({"epoch": epc, "mode": mode, "seconds": time.perf_counter() - t0}) + "\n")
        times.flush()
        return out

    import utils as their_utils

    real_imsave = their_utils.imsave

    def imsave(path, arr, *args, **kwargs):
        return real_imsave(path, arr.astype("uint8"), *args, **kwargs)

    theirs.setup, theirs.get_loaders, theirs.do_epoch = setup, get_loaders, do_epoch
    their_utils.imsave = imsave
    sys.argv = ["main.py"] + params["main_args"]
    theirs.run(theirs.get_args())
    times.close()


def one_slice(params):
    """Their network, losses and bounds on one labeled and one unlabeled slice read through their own
    datasets (their PNG transforms, ``PreciseBounds``): loss values and parameter gradients, saved."""
    from argparse import Namespace

    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
    import losses as their_losses
    import networks
    from dataloader import get_loaders

    args = Namespace(
        losses=params["losses"],
        folders=params["folders"],
        training_folders=params["training_folders"],
        validation_folder=params["validation_folder"],
        val_loader_id=0,
        group=False,
        group_train=False,
        grp_regex=params["grp_regex"],
        n_class=params["n_class"],
    )
    train_loaders, _ = get_loaders(args, params["dataset"], 1, params["n_class"], False, False)
    recipe = eval(params["losses"])  # their own format: [[(loss, params, bounds, bounds params, fn, weight)]]
    state = torch.load(params["weights"], map_location="cpu")
    out = {}
    for case, loader_id in (("ce", 0), ("penalty", 1)):
        dataset = train_loaders[loader_id].dataset
        item = dataset[dataset.filenames.index(params["names"][case])]
        loss_name, loss_params, _, _, fn, weight = recipe[loader_id][0]
        loss_fn = getattr(their_losses, loss_name)(**loss_params, fn=fn)  # as main.py:58-59 builds it
        image, label, bound = item[1][None], item[3][None], item[4][None]
        for mode in ("train", "eval"):
            net = getattr(networks, params["network"])(1, params["n_class"])
            net.apply(networks.weights_init)
            net.load_state_dict(state, strict=True)
            net.train(mode == "train")
            torch.manual_seed(params["torch_seed"])
            probs = F.softmax(net(image), dim=1)
            value = loss_fn(probs, label, bound)
            (weight * value).backward()
            grads = {k: p.grad.detach().clone() for k, p in net.named_parameters() if p.grad is not None}
            out[f"{case}/{mode}"] = {"value": float(value), "weight": float(weight), "grads": grads}
    torch.save(out, params["out"])


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("train", "slice"):
        sys.exit("usage: crosscheck_authors_side.py train|slice PARAMS.json")
    p = _load_params(sys.argv[2])
    train(p) if sys.argv[1] == "train" else one_slice(p)
