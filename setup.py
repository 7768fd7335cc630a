"""Install detr_plugin: ``pip install -e .`` (see tools/setup_env.sh for the stack)."""
from setuptools import find_packages, setup


def read_requirements(path):
    with open(path) as f:
        return [line.strip() for line in f
                if line.strip() and not line.startswith('#')]


setup(
    name='detr_plugin',
    version='0.1.0',
    description='DETR (Carion et al. 2020) as an OpenMMLab plugin for mmdet 3.x',
    packages=find_packages(include=['detr_plugin', 'detr_plugin.*']),
    # torch >= 2.6 (requirements.txt) needs 3.9; the code compiles with
    # 3.9 (python3.9 -m compileall) and is tested on 3.11
    python_requires='>=3.9',
    install_requires=read_requirements('requirements.txt'),
    extras_require={'tests': read_requirements('requirements-test.txt')},
)
