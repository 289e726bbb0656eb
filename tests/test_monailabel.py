"""MONAI Label integration: the project's app (MONAI Label's stock bundle tasks, with checked requests) serves a
trained demo HiMix, unchanged, with the sentence as the ``prompt`` request parameter; a client's values are data.

Builds MONAI Label's own environment (``scripts/monailabel/setup_env.sh``, cached in ``.venv-monailabel``; about
1.5 minutes the first time, the big packages hard-linked from ``.venv``) while it makes demo data and trains HiMix for 10 epochs with ``demo.json``, serves it with
``scripts/monailabel/serve.sh`` on a free port of 127.0.0.1, and stops the server afterwards.
"""

import gzip
import io
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from email.parser import BytesParser
from email.policy import default

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image

from clinical_data import write_ct_series
from conftest import ROOT, configs, run_bundle
from custom_nets.clinical import BundleSegmenter, load_dicom_series
from orthanc import PASSWORD, USER, Orthanc, free_port
from custom_nets.text.prompts import replaced_zone_sentence

pytestmark = [pytest.mark.slow, pytest.mark.monailabel]
CT_AFFINE = np.diag([-0.7, -0.7, 2.5, 1.0])  # scripts/make_demo_volume.py: columns toward the patient's left (L, P, S)


def infer(base: str, image: str, prompt, **options) -> tuple[dict, np.ndarray | nib.Nifti1Image]:
    """POST /infer/himix with ``params={"prompt": ...}``; the response's JSON and mask (PNG array or NIfTI)."""
    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="params"\r\n\r\n'
            f"{json.dumps({'prompt': prompt, **options})}\r\n--{boundary}--\r\n").encode()
    request = urllib.request.Request(f"{base}/infer/himix?image={image}&output=all", data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(request, timeout=300) as r:
        raw, content_type = r.read(), r.headers["Content-Type"]
    message = BytesParser(policy=default).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw)
    params, mask = {}, None
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "params":
            params = json.loads(part.get_content())
        elif (part.get_filename() or "").endswith(".nii.gz"):  # a volume comes back as NIfTI
            mask = nib.Nifti1Image.from_bytes(gzip.decompress(part.get_payload(decode=True)))
        else:
            mask = np.asarray(Image.open(io.BytesIO(part.get_payload(decode=True))))
    return params, mask


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * (a & b).sum() / max(a.sum() + b.sum(), 1)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    work = tmp_path_factory.mktemp("monailabel")
    # MONAI Label's environment builds (pip: mostly downloads and unpacking) while HiMix trains (torch)
    env_log = open(work / "env_build.log", "w")
    env_build = subprocess.Popen(["bash", str(ROOT / "scripts/monailabel/setup_env.sh")], cwd=ROOT, text=True,
                                 stdout=env_log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        data, datalist = work / "data", work / "datalist.json"
        subprocess.run([sys.executable, str(ROOT / "scripts/make_demo_data.py"), "--data-root", str(data),
                        "--datalist", str(datalist)], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        r = run_bundle("run", "training", "--config_file", configs("himix", "train.json", "demo.json"),
                       "--bundle_root", str(work / "bundle"), "--data_root", str(data), "--datalist", str(datalist),
                       "--epochs", "10", "--lr_t_max", "10", "--show_progress", "False",
                       # serving is tested here, not robustness: 10 epochs on the template sentences alone (the
                       # augmented ones of demo.json need the demo's 24 epochs to be read as well)
                       "--text_augmentation", "[]", timeout=1200)
        assert r.returncode == 0, r.stdout[-3000:]
        env_build.wait(timeout=1500)
    finally:
        if env_build.poll() is None:  # training failed: do not leave pip running
            os.killpg(env_build.pid, signal.SIGKILL)
            env_build.wait()
        env_log.close()
    assert env_build.returncode == 0, (work / "env_build.log").read_text()[-3000:]
    studies = work / "studies"
    studies.mkdir()
    test_items = json.loads(datalist.read_text())["test"][:2]
    (studies / "labels" / "final").mkdir(parents=True)
    for item in test_items:  # images, their labels (MONAI Label's datastore layout) and the sentences' sidecar
        (studies / os.path.basename(item["image"])).write_bytes((data / item["image"]).read_bytes())
        (studies / "labels" / "final" / os.path.basename(item["image"])).write_bytes((data / item["label"]).read_bytes())
    # a CT volume of three axial slices, each the first test radiograph mapped back through the lung window to HU
    r = subprocess.run([sys.executable, str(ROOT / "scripts/make_demo_volume.py"), str(data / test_items[0]["image"]),
                        str(studies / "ct_0000.nii.gz")], cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert r.returncode == 0 and "wrote" in r.stdout, r.stdout
    # the same patient stored R,A,S (as nibabel.as_closest_canonical writes it): the mask must land on the same voxels
    lps = nib.load(studies / "ct_0000.nii.gz")
    nib.save(nib.as_closest_canonical(lps), studies / "ct_0000_ras.nii.gz")
    (studies / "sentences.json").write_text(json.dumps({os.path.basename(i["image"]).split(".")[0]: i["text"] for i in test_items}))
    proc, base, log = serve(work, work / "bundle", str(studies), "server", work / "apps")
    try:
        yield base, _info(base), data, test_items, proc, work
    finally:
        stop(proc, log)


def serve(work, bundle_root, studies: str, name: str, apps, env: dict | None = None):
    """``serve.sh himix <bundle_root> <studies> <free port>`` with its app in ``apps``, waited for until ``/info/``
    answers: (process, base URL, log)."""
    port = free_port()
    log = open(work / f"{name}.log", "w")
    proc = subprocess.Popen(["bash", str(ROOT / "scripts/monailabel/serve.sh"), "himix", str(bundle_root), studies, str(port)],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "APPS": str(apps), "PYTHONUNBUFFERED": "1", **(env or {})})
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 300
    while True:
        if proc.poll() is not None or time.time() > deadline:
            stop(proc, log)
            pytest.fail(f"server did not start:\n{(work / f'{name}.log').read_text()[-3000:]}")
        try:
            _info(base)
            return proc, base, log
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(2)


def _info(base: str) -> dict:
    with urllib.request.urlopen(f"{base}/info/", timeout=5) as resp:
        return json.loads(resp.read())


def stop(proc, log) -> None:
    """Stop the server's whole process group; nothing of it is left."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    log.close()
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)


def test_info_lists_the_bundle_as_2d_with_a_prompt(server):
    _, info, *_ = server
    model = info["models"]["himix"]
    assert model["dimension"] == 2 and "prompt" in model["config"]


def test_sentence_guides_the_mask(server):
    base, _, data, items, proc, _ = server
    item = items[0]
    image = os.path.splitext(os.path.basename(item["image"]))[0]
    truth = np.asarray(Image.open(data / item["label"])) > 0
    params, mask = infer(base, image, item["text"])
    assert mask.shape == truth.shape and params["null_text"] is False and params["text_prompt"] == item["text"]
    counterfactual = replaced_zone_sentence(item["text"], item["distractor_zones"])
    _, other = infer(base, image, counterfactual)
    true_dice, other_dice = dice(mask > 0, truth), dice(other > 0, truth)
    print(f"MONAI Label: Dice with the true sentence {true_dice:.3f}, with '{counterfactual}' {other_dice:.3f}")
    assert true_dice > 0.6 and not np.array_equal(mask, other) and other_dice < true_dice


def test_ct_volume_goes_slice_by_slice(server):
    """A NIfTI volume in the studies: every axial slice through the 2D network with the one sentence; NIfTI back."""
    base, _, data, items, proc, _ = server
    item = items[0]
    truth = np.asarray(Image.open(data / item["label"])) > 0  # rows x columns
    params, volume = infer(base, "ct_0000", item["text"])
    mask = np.asarray(volume.dataobj)
    assert mask.shape == (256, 256, 3) and np.allclose(volume.affine, CT_AFFINE) and params["text_prompt"] == item["text"]
    true_dice = [dice(mask[:, :, k].T > 0, truth) for k in range(3)]
    _, other = infer(base, "ct_0000", replaced_zone_sentence(item["text"], item["distractor_zones"]))
    other_dice = [dice(np.asarray(other.dataobj)[:, :, k].T > 0, truth) for k in range(3)]
    print(f"MONAI Label, CT volume: Dice per slice with the true sentence {np.round(true_dice, 3).tolist()}, "
          f"counterfactual {np.round(other_dice, 3).tolist()}")
    assert min(true_dice) > 0.6 and max(other_dice) < min(true_dice) and proc.poll() is None
    # stored R,A,S: the mask comes back on that grid, and in world space it is the same mask
    _, ras = infer(base, "ct_0000_ras", item["text"])
    assert nib.aff2axcodes(ras.affine) == ("R", "A", "S") and ras.shape == (256, 256, 3)
    same = np.asarray(nib.as_closest_canonical(volume).dataobj), np.asarray(ras.dataobj)
    world_dice = dice(same[0] > 0, same[1] > 0)
    print(f"MONAI Label, the same volume stored R,A,S: world-space Dice with the L,P,S result {world_dice:.4f}")
    assert world_dice >= 0.99


def refused(base: str, image: str, prompt, **options) -> str:
    """The request must be answered 422 (a client error, not a crash); its reason."""
    with pytest.raises(urllib.error.HTTPError) as answer:
        infer(base, image, prompt, **options)
    assert answer.value.code == 422, answer.value.read()[:500]
    return json.loads(answer.value.read())["detail"]


def test_bad_ct_window_is_refused_with_its_reason(server):
    base, _, _, items, proc, work = server
    assert refused(base, "ct_0000", items[0]["text"], ct_window_width=0) == "CT window width must be > 0 HU, got 0.0"
    assert "ct_window_centre must be a finite number" in refused(base, "ct_0000", items[0]["text"], ct_window_centre="nan")
    params, volume = infer(base, "ct_0000", items[0]["text"], ct_window_centre="40", ct_window_width="400")  # as a UI sends
    assert volume.shape == (256, 256, 3) and proc.poll() is None


def test_request_values_are_data_never_code(server, tmp_path):
    """The attacks of the hardening issue: code, references, macros, objects and paths sent as request values."""
    base, _, _, items, proc, work = server
    image = os.path.splitext(os.path.basename(items[1]["image"]))[0]
    owned = tmp_path / "owned"
    code = f"$__import__('pathlib').Path('{owned}').touch() or 'owned'"
    assert "prompt must be plain text, not MONAI config syntax" in refused(base, image, code)
    assert "ct_window_centre must be a number" in refused(base, "ct_0000", items[0]["text"], ct_window_centre=code)
    assert "prompt must be a string, got dict" in refused(base, image, {"_target_": "os.makedirs", "name": str(owned)})
    assert "device must be one of" in refused(base, image, items[1]["text"], device=code)
    secret = work / "secret.json"
    secret.write_text(json.dumps({"key": "the secret value"}))
    for reference in (f"%{secret}#key", "@text_encoder_id", "left lung @#text_encoder_id"):
        assert "the secret value" not in refused(base, image, reference)
    elsewhere = work / "elsewhere" / "model.pt"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes((work / "apps" / "textseg" / "model" / "himix" / "models" / "model.pt").read_bytes())
    detail = refused(base, image, items[1]["text"], model_filename=os.path.relpath(elsewhere, work / "apps" / "textseg" / "model" / "himix" / "models"))
    assert detail.startswith("model_filename must be one of ['model.pt']")
    time.sleep(1)
    assert not owned.exists() and proc.poll() is None
    params, mask = infer(base, image, items[1]["text"], model_filename="model.pt", device="cpu")  # the server's own values
    assert params["text_prompt"] == items[1]["text"] and mask.shape == (256, 256)


def test_stored_names_are_never_paths(server):
    """A label uploaded with a tag (or an image with an id) that is a path is refused; nothing lands outside."""
    base, _, data, items, proc, work = server
    image = os.path.splitext(os.path.basename(items[0]["image"]))[0]
    label = (data / items[0]["label"]).read_bytes()
    for path, field in ((f"/datastore/label?image={image}&tag=..%2F..%2F..%2Fescaped_tag", "label"),
                        ("/datastore/image?image=..%2F..%2Fescaped_image", "file")):
        boundary = uuid.uuid4().hex
        body = (f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="x.png"\r\n'
                f"Content-Type: image/png\r\n\r\n").encode() + label + f"\r\n--{boundary}--\r\n".encode()
        request = urllib.request.Request(base + path, data=body, method="PUT",
                                         headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(request, timeout=60)
        assert answer.value.code == 422 and "must be a name of letters, digits" in answer.value.read().decode()
    assert not [p for p in work.rglob("*escaped*")] and proc.poll() is None


def test_cors_answers_only_the_named_origin(server):
    """serve.sh limits CORS to the server's own origin: a page elsewhere gets no Access-Control-Allow-Origin."""
    base, *_ = server

    def cors_headers(origin: str, method: str = "OPTIONS"):
        headers = {"Origin": origin} | ({"Access-Control-Request-Method": "POST"} if method == "OPTIONS" else {})
        url = f"{base}/infer/himix?image=x" if method == "OPTIONS" else f"{base}/info/"
        try:
            with urllib.request.urlopen(urllib.request.Request(url, method=method, headers=headers), timeout=30) as r:
                return r.headers
        except urllib.error.HTTPError as e:  # Starlette answers a refused preflight with 400
            return e.headers

    for origin in ("http://evil.example", "null", base + ".evil.example"):
        for method in ("OPTIONS", "GET"):
            headers = cors_headers(origin, method)
            # without Access-Control-Allow-Origin a browser gives the page nothing (Starlette's refused preflight
            # still carries Access-Control-Allow-Credentials, which alone grants nothing)
            assert headers.get("Access-Control-Allow-Origin") is None, (origin, method, dict(headers))
    assert cors_headers(base).get("Access-Control-Allow-Origin") == base  # the named origin (serve.sh's default)


@pytest.mark.parametrize("prompt", ["", "x" * 5000, "Lésion bilatérale, poumon gauche — 左肺; \u0000\u202e"])
def test_bad_prompts_get_an_answer(server, prompt):
    base, _, data, items, proc, _ = server
    image = os.path.splitext(os.path.basename(items[1]["image"]))[0]
    params, mask = infer(base, image, prompt)
    assert mask.shape == (256, 256) and params["null_text"] is (not prompt.strip())
    assert proc.poll() is None  # the server is still up


def test_training_from_monailabel_reads_the_sidecar_sentences(server):
    """BundleTrainTask's datalist has image and label only; SidecarTextd adds each sentence from sentences.json."""
    base, _, _, _, proc, work = server
    model = work / "apps" / "textseg" / "model" / "himix" / "models" / "model.pt"
    before = model.read_bytes()
    request = urllib.request.Request(f"{base}/train/himix?run_sync=true", method="POST",
                                     data=json.dumps({"max_epochs": 1, "val_split": 0.5}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as r:
        assert r.status == 200
    log = (work / "server.log").read_text()
    assert "Total Records for Training: 1" in log and "val_mean_dice" in log, log[-3000:]
    assert model.read_bytes() != before and proc.poll() is None  # the served model was fine-tuned in place


def test_training_request_values_are_data(server, tmp_path):
    """A training request's values reach the bundle config too (max_epochs, run_id, options): checked, never run."""
    base, _, _, _, proc, work = server
    owned = tmp_path / "owned_by_training"
    model = work / "apps" / "textseg" / "model" / "himix" / "models" / "model.pt"
    before = model.read_bytes()
    for values in ({"max_epochs": f"$__import__('pathlib').Path('{owned}').touch() or 1"}, {"run_id": "initialize"},
                   {"max_epochs": 1, "tracking": "mlflow", "tracking_uri": f"file://{owned}"}):
        request = urllib.request.Request(f"{base}/train/himix?run_sync=true", method="POST", data=json.dumps(values).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=600) as r:
                r.read()
        except urllib.error.HTTPError:
            pass  # MONAI Label runs training in a subprocess: a refusal may come back as any failure
    deadline = time.time() + 20
    while "request refused: max_epochs must be a number" not in (work / "server.log").read_text():
        assert time.time() < deadline, (work / "server.log").read_text()[-3000:]
        time.sleep(1)
    log = (work / "server.log").read_text()
    assert "request refused: run_id must be one of" in log and "request refused: experiment tracking is off" in log
    assert not owned.exists() and model.read_bytes() == before and proc.poll() is None


def test_a_ct_series_held_in_a_pacs(server, tmp_path):
    """MONAI Label with a PACS as its studies (Orthanc, ``serve.sh himix BUNDLE_ROOT http://127.0.0.1:PORT/dicom-web``):
    a CT series held there is listed, inferred with a prompt, its label comes back on the series' grid, and a final
    label saved from the client is stored back in the PACS as a DICOM SEG of that study."""
    _, _, data, items, _, work = server
    truth = np.asarray(Image.open(data / items[0]["label"])) > 0
    orthanc = Orthanc(tmp_path / "orthanc").start()
    try:
        # the demo CT (three slices, each the first test radiograph in HU) as a DICOM series in the PACS
        volume = nib.load(work / "studies" / "ct_0000.nii.gz")
        files, _ = write_ct_series(tmp_path / "ct", hu=np.asarray(volume.dataobj))
        orthanc.upload(*files)
        source = pydicom.dcmread(files[0])
        series, study = str(source.SeriesInstanceUID), str(source.StudyInstanceUID)
        proc, base, log = serve(work, work / "bundle", orthanc.url, "pacs", tmp_path / "apps", env={
            "MONAI_LABEL_DICOMWEB_USERNAME": USER, "MONAI_LABEL_DICOMWEB_PASSWORD": PASSWORD,
            "MONAI_LABEL_DICOMWEB_CACHE_PATH": str(tmp_path / "cache")})
        try:
            # the series is what MONAI Label offers to annotate (a viewer's "next sample"), fetched over WADO-RS
            request = urllib.request.Request(f"{base}/activelearning/first", data=b"{}", method="POST",
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=120) as r:
                offered = json.loads(r.read())
            assert offered["id"] == series and offered["StudyInstanceUID"] == study
            params, label = infer(base, series, items[0]["text"])
            mask = np.asarray(label.dataobj) > 0
            assert mask.shape == (256, 256, 3) and params["text_prompt"] == items[0]["text"]
            # RAS affine of the series' own geometry (tests/clinical_data.py: spacing 0.8 x 0.7 x 2.5 mm from ORIGIN)
            assert np.allclose(label.affine, [[-0.7, 0, 0, 40], [0, -0.8, 0, 30], [0, 0, 2.5, 100], [0, 0, 0, 1]], atol=1e-4)
            per_slice = [dice(mask[:, :, k].T, truth) for k in range(3)]
            # the batch runner's mask of the same files (this process, the same bundle): MONAI Label's DICOM to NIfTI
            # conversion (SimpleITK) keeps the voxel order, so the two masks are voxel for voxel comparable
            segmenter = BundleSegmenter(ROOT / "bundles" / "himix", ["demo.json"], bundle_root=str(work / "bundle"))
            batch = segmenter.segment_volume(load_dicom_series(files), items[0]["text"]) > 0
            same = dice(mask, batch)
            print(f"MONAI Label on Orthanc (DICOMweb): Dice per slice {np.round(per_slice, 3).tolist()}, "
                  f"Dice with scripts/infer_dicom.py's mask of the same series {same:.4f}")
            assert min(per_slice) > 0.6 and same > 0.98

            # the annotator saves the (corrected) label as final: it goes back to the PACS as a DICOM SEG
            boundary = uuid.uuid4().hex
            body = (f'--{boundary}\r\nContent-Disposition: form-data; name="params"\r\n\r\n{{}}\r\n'
                    f'--{boundary}\r\nContent-Disposition: form-data; name="label"; filename="label.nii.gz"\r\n'
                    f"Content-Type: application/octet-stream\r\n\r\n").encode() + gzip.compress(label.to_bytes()) + \
                f"\r\n--{boundary}--\r\n".encode()
            request = urllib.request.Request(f"{base}/datastore/label?image={series}&tag=final", data=body, method="PUT",
                                             headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
            with urllib.request.urlopen(request, timeout=120) as r:
                assert r.status == 200
            [seg] = orthanc.series(study, "SEG")
            print(f"final label stored in Orthanc as SEG series {seg['0020000E']['Value'][0]}")
        finally:
            stop(proc, log)
    finally:
        orthanc.stop()
