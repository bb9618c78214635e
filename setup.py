"""BioCLIP Lite: distil BioCLIP into a MobileNetV3 student and ship it to TF.js.

The stages are separate packages with separate dependency sets (extras):
  teacher  - teacher_cache (PyTorch + open_clip only)
  student  - tfds_treeoflife and bioclip_lite_tf training (TensorFlow, tf_keras, tfmot, TFDS)
  export   - TF.js conversion (tensorflowjs)
  beam     - the TFDS Apache Beam build path
  test     - pytest and hypothesis
The exact versions that were verified together live in requirements/lock.txt; `make` installs
from it.
"""
from setuptools import find_packages, setup

TEACHER = [
    "torch==2.14.1",
    "torchvision==0.29.1",
    "open_clip_torch>=3.0",
    "pillow",
    "numpy",
    "absl-py",
]
STUDENT = [
    "tensorflow==2.19.0",
    "tf-keras==2.19.0",
    "tensorflow-model-optimization==0.8.1",
    "tensorflow-datasets==4.9.9",
    # TF 2.19 holds protobuf at 5.x; newer metadata/ydf carry protobuf 6 gencode.
    "tensorflow-metadata<1.17",
    "absl-py",
    "numpy",
    "pillow",
    "matplotlib",
]
EXPORT = [
    "tensorflowjs==4.22.0",
    "ydf<0.13",
    # the TF.js converter imports pkg_resources
    "setuptools<80",
]
BEAM = ["apache-beam"]
TEST = ["pytest", "hypothesis", "dill"]  # dill: tfds.testing (DatasetBuilderTestCase) imports it

setup(
    name="bioclip-lite",
    version="0.1.0",
    description="Distil BioCLIP into a mobile MobileNetV3 student and ship it to TensorFlow.js",
    packages=find_packages(include=["formats*", "teacher_cache*", "tfds_treeoflife*",
                                    "bioclip_lite_tf*"]),
    include_package_data=True,
    package_data={"": ["*.md", "*.bib", "*.tsv", "*.json", "dummy_data/**/*"]},
    python_requires=">=3.10,<3.12",
    install_requires=["numpy", "absl-py"],
    extras_require={
        "teacher": TEACHER,
        "student": STUDENT,
        "export": STUDENT + EXPORT,
        "beam": BEAM,
        "test": TEST,
        "all": TEACHER + STUDENT + EXPORT + BEAM + TEST,
    },
)
