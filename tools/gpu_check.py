"""The prepared GPU check (``bash tools/gpu_check.sh``; see its header).

Steps, each with a time limit, its output kept under ``--out``:

1. ``env``: GPU, driver, torch, CUDA, nvcc;
2. ``install``: a ``--system-site-packages`` venv (``.venv-gpu``, reusing
   the machine's torch, scipy, OpenCV...) with the wheelhouse's packages
   and this repository, offline;
3. ``mmcv``: mmcv 2.1.0 built from its sdist with its CUDA kernels
   (``FORCE_CUDA=1``, this GPU's architecture only), checked with
   ``mmcv.ops.get_compiling_cuda_version()``; where that fails, built with
   its CPU ops so that what needs no kernel still runs;
4. ``tests``: the tests marked ``cuda``;
5. ``benchmark``: ``tools/benchmark.py --device cuda`` for DETR and DINO
   against mmdet's same models (fp32, and ``--amp``'s fp16 with a loss
   scaler);
6. ``demo``: 200 iterations of the DINO demo with ``--amp``;

then one table (also ``OUT/gpu_check.md`` and ``OUT/gpu_check.json``).
``--dry-run`` runs the same steps on a CPU with what stands in for each:
the plan is printed, the wheelhouse checked (``--wheels``), the cuda tests
collected, one benchmark item timed on the CPU and 4 iterations of the DINO
demo in fp16 trained.
"""
import argparse
import glob
import json
import os
import os.path as osp
import re
import subprocess
import sys
import time
from typing import Dict, List, Optional

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
WHEELHOUSE_LIMIT = 60 * 2**20
# the wheelhouse: what the GPU machine's image lacks (KINDS.md of the device
# tool lists what it has: torch, scipy, OpenCV, matplotlib, pytest, ...)
WHEELS = ('mmengine==0.10.7', 'mmdet==3.3.0', 'addict', 'yapf',
          'platformdirs', 'termcolor', 'terminaltables', 'shapely',
          'pycocotools')
MMCV_SDIST = 'mmcv==2.1.0'
# step time limits, seconds (the whole check: at most 10 minutes on one
# H100 was the goal; not yet measured on one)
LIMITS = dict(install=120, mmcv=360, tests=180, benchmark=240, demo=180)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--prepare', metavar='DIR',
                        help='write the wheelhouse to DIR and stop')
    parser.add_argument('--python-version', default='3.12',
                        help="with --prepare: the GPU machine's Python")
    parser.add_argument('--wheels', metavar='DIR', default='.gpu_wheels',
                        help='the wheelhouse --prepare wrote')
    parser.add_argument('--out', default='work_dirs/gpu_check',
                        help='logs, JSON and the table')
    parser.add_argument('--dry-run', action='store_true',
                        help='on a CPU: the plan and the stand-in steps')
    return parser.parse_args(argv)


# --------------------------------------------------------------- wheelhouse
def prepare(folder: str, python_version: str) -> None:
    """Download the wheels (for ``python_version``, manylinux x86_64) and
    mmcv's sdist into ``folder``; refuse a wheelhouse over the limit."""
    os.makedirs(folder, exist_ok=True)
    pip = [sys.executable, '-m', 'pip', 'download', '--quiet', '--dest',
           folder, '--no-deps']
    tags = ['--only-binary=:all:', '--python-version', python_version,
            '--implementation', 'cp', '--platform', 'manylinux2014_x86_64',
            '--platform', 'manylinux_2_17_x86_64', '--platform',
            'manylinux_2_28_x86_64']
    subprocess.run(pip + tags + list(WHEELS), check=True)
    # its setup.py imports torch even to tell its metadata: built here,
    # beside this interpreter's torch
    subprocess.run(pip + ['--no-binary=:all:', '--no-build-isolation',
                          MMCV_SDIST], check=True)
    problems = check_wheelhouse(folder)
    if problems:
        raise SystemExit('error: ' + '; '.join(problems))
    print(f'wrote {folder}: {wheelhouse_size(folder) / 2**20:.1f} MiB')


def wheelhouse_size(folder: str) -> int:
    return sum(osp.getsize(f) for f in glob.glob(osp.join(folder, '*')))


def check_wheelhouse(folder: str) -> List[str]:
    """What is wrong with a wheelhouse (nothing: an empty list)."""
    if not osp.isdir(folder):
        return [f'no wheelhouse at {folder} (bash tools/gpu_check.sh '
                f'--prepare {folder} on a machine with the package index)']
    names = [osp.basename(f).lower().replace('-', '_')
             for f in glob.glob(osp.join(folder, '*'))]
    problems = [f'{folder} lacks {spec}' for spec in WHEELS + (MMCV_SDIST, )
                if not any(n.startswith(spec.split('==')[0].replace('-', '_')
                                        + '_') for n in names)]
    if not any(n.startswith('mmcv_2.1.0.tar') for n in names):
        problems.append(f"{folder} lacks mmcv's sdist mmcv-2.1.0.tar.gz")
    size = wheelhouse_size(folder)
    if size > WHEELHOUSE_LIMIT:
        problems.append(f'{folder} holds {size / 2**20:.1f} MiB, over the '
                        f'{WHEELHOUSE_LIMIT / 2**20:.0f} MiB limit')
    return problems


# ------------------------------------------------------------------- steps
class Check:
    """Runs the steps, keeps their logs and results."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.dry = args, args.dry_run
        self.out = osp.abspath(args.out)
        os.makedirs(self.out, exist_ok=True)
        self.results: Dict[str, dict] = {}
        self.python = sys.executable

    def run(self, name: str, cmd: List[str], limit: int,
            env: Optional[dict] = None) -> subprocess.CompletedProcess:
        """``cmd`` under ``limit`` seconds; output to ``OUT/<name>.log``."""
        print(f'[gpu_check] {name}: {" ".join(cmd)}', flush=True)
        start = time.time()
        try:
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True,
                                  text=True, timeout=limit,
                                  env=dict(os.environ, **(env or {})))
        except subprocess.TimeoutExpired as e:
            proc = subprocess.CompletedProcess(
                cmd, 124, (e.stdout or b'').decode(errors='replace')
                if isinstance(e.stdout, bytes) else e.stdout or '',
                f'timed out after {limit} s')
        with open(osp.join(self.out, f'{name}.log'), 'a') as f:
            f.write(f'$ {" ".join(cmd)}\n{proc.stdout}\n{proc.stderr}\n')
        step = self.results.setdefault(name, {})
        step['seconds'] = round(step.get('seconds', 0) + time.time() - start,
                                1)
        if proc.returncode:
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
            self.results[name]['error'] = ' | '.join(tail)[-300:]
        return proc

    def env(self) -> None:
        import torch
        info = dict(torch=torch.__version__, cuda=torch.version.cuda,
                    python=sys.version.split()[0])
        if torch.cuda.is_available():
            info['gpu'] = torch.cuda.get_device_name()
            major, minor = torch.cuda.get_device_capability()
            info['arch'] = f'{major}.{minor}'
        else:
            info['gpu'] = 'none (CPU: ' + torch.backends.cpu.\
                get_cpu_capability() + ')'
        try:
            nvcc = subprocess.run(['nvcc', '--version'], capture_output=True,
                                  text=True).stdout
            info['nvcc'] = re.findall(r'release ([\d.]+)', nvcc)[0]
        except (OSError, IndexError):
            info['nvcc'] = 'not found'
        self.results['env'] = info

    def install(self) -> None:
        wheels = osp.abspath(self.args.wheels)
        problems = check_wheelhouse(wheels)
        self.results['install'] = dict(wheelhouse=wheels, problems=problems)
        venv = osp.join(ROOT, '.venv-gpu')
        pip = [osp.join(venv, 'bin', 'python'), '-m', 'pip', 'install',
               '--no-index', '--find-links', wheels, '--no-deps']
        cmds = [[sys.executable, '-m', 'venv', '--system-site-packages',
                 venv], pip + [spec.split('==')[0] for spec in WHEELS],
                pip + ['--no-build-isolation', '-e', ROOT]]
        if self.dry:  # pip resolves the offline install without doing it
            for cmd in cmds:
                print(f'[gpu_check] install (dry run): {" ".join(cmd)}')
            return
        if problems:
            raise SystemExit('error: ' + '; '.join(problems))
        for cmd in cmds:
            if self.run('install', cmd, LIMITS['install']).returncode:
                raise SystemExit('error: the install failed: see '
                                 f'{self.out}/install.log')
        self.python = osp.join(venv, 'bin', 'python')

    def mmcv(self) -> None:
        sdist = (glob.glob(osp.join(osp.abspath(self.args.wheels),
                                    'mmcv-2.1.0.tar.gz')) or ['mmcv'])[0]
        arch = self.results['env'].get('arch', '')
        env = dict(FORCE_CUDA='1', MMCV_WITH_OPS='1',
                   MAX_JOBS=str(os.cpu_count() or 2),
                   TORCH_CUDA_ARCH_LIST=arch)
        cmd = [self.python, '-m', 'pip', 'install', '--no-index',
               '--no-build-isolation', '--no-deps', '--no-cache-dir', sdist]
        if not self.dry:
            proc = self.run('mmcv', cmd, LIMITS['mmcv'], env)
            if proc.returncode:  # CPU ops at least: what needs none runs
                self.run('mmcv', cmd, LIMITS['mmcv'],
                         dict(env, FORCE_CUDA='0', CUDA_VISIBLE_DEVICES=''))
        else:
            print(f'[gpu_check] mmcv (dry run): {env} {" ".join(cmd)}')
        probe = subprocess.run(
            [self.python, '-c', 'import mmcv.ops; '
             'print(mmcv.ops.get_compiling_cuda_version())'],
            capture_output=True, text=True)
        self.results.setdefault('mmcv', {})['cuda_ops'] = \
            probe.stdout.strip() or probe.stderr.strip().splitlines()[-1]

    def tests(self) -> None:
        cmd = [self.python, '-m', 'pytest', 'tests', '-q', '-m', 'cuda',
               '-p', 'no:cacheprovider']
        if self.dry:
            cmd.append('--collect-only')
        proc = self.run('tests', cmd, LIMITS['tests'])
        tail = proc.stdout.strip().splitlines()[-1:] or ['']
        counts = dict((k, int(v)) for v, k in re.findall(
            r'(\d+) (passed|failed|errors?|skipped|tests? collected)',
            tail[0]))
        self.results['tests'].update(summary=tail[0], **counts)

    def benchmark(self) -> None:
        device = 'cpu' if self.dry else 'cuda'
        items = ['head_loss'] if self.dry else [
            'head_loss', 'inference', 'train_step', 'amp_train_step']
        for model in ('detr', ) if self.dry else ('detr', 'dino'):
            out = osp.join(self.out, f'benchmark_{model}.json')
            self.run('benchmark', [
                self.python, 'tools/benchmark.py', '--device', device,
                '--model', model, '--json', out, '--only', *items,
                '--repeats', '1' if self.dry else '5'], LIMITS['benchmark'])
            if osp.isfile(out):
                with open(out) as f:
                    self.results['benchmark'].setdefault(
                        'models', {})[model] = json.load(f)

    def demo(self) -> None:
        data = osp.join(self.out, 'shapes')
        sizes = ['16', '4'] if self.dry else ['1000', '100']
        self.run('demo', [
            self.python, 'tools/generate_demo_data.py', '--out', data,
            '--num-train', sizes[0], '--num-val', sizes[1], '--image-size',
            '64', '64', '--max-objects', '3', '--size-range', '0.3', '0.6'],
            LIMITS['demo'])
        iters = 4 if self.dry else 200
        work = osp.join(self.out, 'dino_demo')
        proc = self.run('demo', [
            self.python, 'tools/train.py', 'configs/demo/dino_r18_shapes.py',
            '--amp', '--amp-dtype', 'float16', '--work-dir', work,
            '--cfg-options', f'train_cfg.max_iters={iters}',
            f'train_cfg.val_interval={iters}',
            f'default_hooks.logger.interval={min(iters, 50)}',
            f'train_dataloader.dataset.data_root={data}/',
            f'val_dataloader.dataset.data_root={data}/',
            f'val_evaluator.ann_file={data}/annotations/instances_val.json',
            'train_dataloader.num_workers=0',
            'train_dataloader.persistent_workers=False',
            'val_dataloader.num_workers=0',
            'val_dataloader.persistent_workers=False'] + (
                ['train_dataloader.batch_size=2'] if self.dry else []),
            LIMITS['demo'])
        log = proc.stdout + proc.stderr
        times = [float(t) for t in re.findall(r'Iter\(train\).* time: '
                                              r'([\d.]+)', log)]
        map50 = re.findall(r'coco/bbox_mAP_50: ([\d.]+)', log)
        self.results['demo'].update(
            iterations=iters, finished=not proc.returncode and
            f'Iter(train) [{iters}/{iters}]' in log,
            seconds_per_iter=round(times[-1], 4) if times else None,
            fp16_overflow_steps=log.count('fp16 overflow at'),
            bbox_mAP_50=float(map50[-1]) if map50 else None)

    # ------------------------------------------------------------ report
    def table(self) -> str:
        r = self.results
        env = r['env']
        rows = [('machine', f"{env['gpu']}, torch {env['torch']}, CUDA "
                 f"{env['cuda']}, nvcc {env['nvcc']}, Python "
                 f"{env['python']}" + (' (dry run)' if self.dry else '')),
                ('mmcv ops compiled with CUDA', r['mmcv']['cuda_ops'])]
        if r['install'].get('problems'):
            rows.append(('wheelhouse', '; '.join(r['install']['problems'])))
        rows.append(('cuda tests', r['tests'].get('summary', '?')))
        for model, bench in r['benchmark'].get('models', {}).items():
            for item in ('head_loss', 'inference', 'train_step',
                         'amp_train_step'):
                if f'{item}_speedup' in bench:
                    seconds = bench[f'{item}_seconds']
                    rows.append((f'{model} {item}' + (
                        f" ({bench.get('amp_dtype')})"
                        if item == 'amp_train_step' else ''),
                        f"{bench[f'{item}_speedup']:.2f}x (mmdet "
                        f"{seconds['mmdet']:.4f} s, ours "
                        f"{seconds['plugin']:.4f} s)"))
        demo = r['demo']
        rows.append(('DINO demo --amp (fp16)',
                     f"{demo.get('iterations')} iterations "
                     + ('finished' if demo.get('finished')
                        else 'NOT finished')
                     + f", {demo.get('seconds_per_iter')} s/iter, fp16 "
                     'overflow steps skipped '
                     f"{demo.get('fp16_overflow_steps')}, "
                     f"bbox mAP_50 {demo.get('bbox_mAP_50')}"))
        for name, step in r.items():
            if isinstance(step, dict) and 'error' in step:
                rows.append((f'{name} failed', step['error']))
        seconds = sum(s.get('seconds', 0) for s in r.values()
                      if isinstance(s, dict))
        rows.append(('time for the steps', f'{seconds:.0f} s'))
        return '| check | result |\n|---|---|\n' + '\n'.join(
            f'| {k} | {v} |' for k, v in rows)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.prepare:
        prepare(args.prepare, args.python_version)
        return 0
    check = Check(args)
    for step in ('tests', 'benchmark', 'demo'):
        check.results[step] = {}
    check.env()
    check.install()
    check.mmcv()
    check.tests()
    check.benchmark()
    check.demo()
    table = check.table()
    print(table)
    with open(osp.join(check.out, 'gpu_check.md'), 'w') as f:
        f.write(table + '\n')
    with open(osp.join(check.out, 'gpu_check.json'), 'w') as f:
        json.dump(check.results, f, indent=2)
    failed = [name for name, step in check.results.items()
              if isinstance(step, dict) and 'error' in step]
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
