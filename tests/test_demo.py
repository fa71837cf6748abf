"""The browser demo (serving/demo.py): its panel logic against the embedded server with tiny
exports, and the page itself in a real headless Chromium driven by Selenium."""
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import requests
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from conftest import ROOT
from serving import demo as demo_lib
from serving import export
from serving_helpers import ServerProcess, free_port
from zoo import registry

MODELS = ("vae_mnist", "pixelcnn_mnist", "cgan_mnist", "cyclegan_thick_mnist", "text2image_mnist")
# The browser test's screenshot goes here when set (the README's is docs/images/demo.png).
SCREENSHOT = os.environ.get("GENZOO_DEMO_SCREENSHOT")


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory):
    """The zoo's pretrained vae_mnist (its card and pictures: the page's screenshot shows real
    digits), small untrained exports of the other kinds of signature sets, and a configured
    model with no version on disk."""
    base = tmp_path_factory.mktemp("zoo")
    export.export(registry.build("pixelcnn_mnist", filters=4, num_blocks=1), base)
    export.export(registry.build("cgan_mnist", filters=4, latent_dim=8), base)
    export.export(registry.build("cyclegan_thick_mnist", filters=4, d_filters=4), base)
    export.export(registry.build("text2image_mnist", filters=4, latent_dim=8, embed_dim=4), base)
    (base / "empty_model").mkdir()
    extra = "".join(f'  config {{\n    name: "{name}"\n    base_path: "{path}"\n'
                    f'    model_platform: "tensorflow"\n  }}\n'
                    for name, path in (("vae_mnist", ROOT / "exported" / "vae_mnist"),
                                       ("empty_model", "empty_model")))
    config = base / "models.config"
    config.write_text(config.read_text().replace("model_config_list {\n", "model_config_list {\n" + extra, 1))
    return base


@pytest.fixture(scope="module")
def server(zoo_dir, tmp_path_factory):
    proc = ServerProcess("--model_config_file", zoo_dir / "models.config", "--max_rows", 8,
                         models=MODELS, log_path=tmp_path_factory.mktemp("logs") / "server.log")
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def demo(server, zoo_dir):
    return demo_lib.Demo(f"http://127.0.0.1:{server.rest_port}", zoo_dir / "models.config",
                         max_rows=5)


def test_panels_follow_the_signatures(demo):
    panels = {name: demo.info(name).panels for name in MODELS}
    assert panels == {
        "vae_mnist": ["sample", "log_prob", "interpolate"],
        "pixelcnn_mnist": ["sample", "complete", "log_prob"],
        "cgan_mnist": ["sample", "interpolate"],
        "cyclegan_thick_mnist": ["translate"],
        "text2image_mnist": ["sample", "interpolate"],
    }
    assert demo.info("vae_mnist").interpolation_modes() == ["seeds", "images"]
    assert demo.info("cgan_mnist").conditions() == ["label"]
    assert demo.info("text2image_mnist").conditions() == ["text"]
    assert demo.info("vae_mnist").version == 1


def test_sample_splits_requests_at_max_rows_and_matches_one_request(demo, server):
    """12 samples go as requests of 5, 5 and 2 rows (the server's limit is 8), and the grid
    holds the images that one request of all the seeds returns."""
    calls = []
    info = demo.info("pixelcnn_mnist")
    picture = demo.sample(info, seed=3, count=12, progress=lambda f, desc: calls.append(desc))
    assert calls == ["pixelcnn_mnist:sample rows 1-5 of 12", "pixelcnn_mnist:sample rows 6-10 of 12",
                     "pixelcnn_mnist:sample rows 11-12 of 12"]
    seeds = np.stack([np.full(8, 3), np.arange(8)], 1)
    direct = demo.client.sample("pixelcnn_mnist", seeds)["images"]
    assert picture.shape == (3 * 30 + 2, 4 * 30 + 2, 1)  # 3 rows of 4 28x28 images, 2-pixel gaps
    np.testing.assert_array_equal(picture[2:30, 2:30], direct[0])
    np.testing.assert_array_equal(picture[32:60, 2:30], direct[4])  # row 1, column 0: sample 4


def test_server_errors_reach_the_page_as_the_servers_message(demo, server):
    with pytest.raises(demo_lib.DemoError, match="label must be < 10"):
        demo.sample(demo.info("cgan_mnist"), seed=0, count=2, label=12)
    with pytest.raises(demo_lib.DemoError, match="banana"):
        demo.sample(demo.info("text2image_mnist"), seed=0, count=2, text="a banana")
    with pytest.raises(demo_lib.DemoError, match="class-conditional"):
        demo.sample(demo.info("cgan_mnist"), seed=0, count=2)
    info = demo.info("pixelcnn_mnist")
    for bad, match in ((dict(seed=None, count=2), "seed must be a whole number"),
                       (dict(seed=0, count=65), "count must be a whole number from 1 to 64"),
                       (dict(seed=0.5, count=2), "seed must be")):
        with pytest.raises(demo_lib.DemoError, match=match):  # checked before anything is sent
            demo.sample(info, **bad)
    with pytest.raises(demo_lib.DemoError, match="unknown model"):
        demo.info("nope")
    gone = demo_lib.Demo(f"http://127.0.0.1:{free_port()}", models=["vae_mnist"])
    with pytest.raises(demo_lib.DemoError, match="Cannot reach the server"):
        gone.info("vae_mnist")


def test_a_model_that_is_not_served_says_so(demo):
    """A configured model with no version on disk has no panels: the page shows what the
    server says of it."""
    assert "empty_model" in demo.model_names
    with pytest.raises(demo_lib.DemoError, match="The server answered 404") as err:
        demo.info("empty_model")
    print(err.value)


def test_complete_keeps_the_visible_pixels(demo):
    info = demo.info("pixelcnn_mnist")
    image = demo.picks(info)[0]
    assert image.shape == (28, 28, 1) and set(np.unique(image)) <= {0, 255}  # the binarized test set
    mask = demo_lib.half_mask((28, 28, 1), "bottom")
    picture = demo.complete(info, image, mask, count=3, seed=1)
    cells = [picture[2:30, 2 + 30 * k:30 + 30 * k] for k in range(5)]
    np.testing.assert_array_equal(cells[0][:14], image[:14])
    assert (cells[0][14:] == demo_lib.HIDDEN_GREY).all()
    for done in cells[1:4]:
        np.testing.assert_array_equal(done[:14], image[:14])
    np.testing.assert_array_equal(cells[4], image)


def test_drawn_mask_hides_the_painted_pixels():
    painted = np.zeros((112, 112, 4), np.uint8)
    painted[:56, 56:, 3] = 255  # the top right quarter, at 4x
    keep = demo_lib.drawn_mask(painted, (28, 28, 1))
    assert keep.shape == (28, 28, 1)
    assert (keep[:14, 14:] == 0).all() and keep[14:].all() and keep[:, :14].all()
    strokes = np.zeros((112, 112, 4), np.uint8)
    strokes[100:, :8, 3] = 255  # a second layer: the bottom left corner
    editor = {"background": np.zeros((112, 112, 4), np.uint8), "layers": [painted, strokes],
              "composite": None}  # what the page's ImageEditor hands the action
    keep = demo_lib.editor_mask(editor, (28, 28, 1))
    assert (keep[:14, 14:] == 0).all() and (keep[25:, :2] == 0).all() and keep[:25, :14].all()
    with pytest.raises(demo_lib.DemoError, match="draw over"):
        demo_lib.editor_mask({"background": None, "layers": []}, (28, 28, 1))


def test_log_prob_beside_the_card(demo):
    info = demo.info("vae_mnist")
    text = demo.log_prob(info, demo.picks(info)[0])
    assert "nats" in text and "bits per dimension" in text
    card = json.loads((ROOT / "exported" / "vae_mnist" / "metrics.json").read_text())
    assert f"{card['test_nll_iwae']:.2f} nats" in text and "test NLL bound (IWAE)" in text
    nats = float(text.split("**log p(x)** = ")[1].split(" ")[0])
    direct = demo.client.log_prob("vae_mnist", demo.picks(info)[:1])["log_prob"][0]
    assert nats == pytest.approx(direct, abs=0.01)


def test_interpolation_ends_at_the_two_samples(demo):
    """Between seeds, the strip's ends are the samples of those seeds (decoded means for the
    VAE, the generator's images for the GAN)."""
    info = demo.info("cgan_mnist")
    strip = demo.interpolate(info, "seeds", 5, seeds=(4, 9), label=3)
    direct = demo.client.sample("cgan_mnist", [[4, 0], [9, 0]], label=[3, 3])["images"]
    np.testing.assert_array_equal(strip[2:30, 2:30], direct[0])
    np.testing.assert_array_equal(strip[2:30, 2 + 4 * 30:30 + 4 * 30], direct[1])
    info = demo.info("vae_mnist")
    images = demo.picks(info)[:2]
    strip = demo.interpolate(info, "images", 3, images=(images[0], images[1]))
    assert strip.shape == (32, 3 * 30 + 2, 1)
    with pytest.raises(demo_lib.DemoError, match="cannot interpolate"):
        demo.interpolate(demo.info("text2image_mnist"), "images", 3, images=(images[0], images[1]))


def test_slerp_keeps_the_ends_and_the_norm():
    a, b = np.array([3.0, 0.0]), np.array([0.0, 3.0])
    path = demo_lib.slerp(a, b, np.linspace(0, 1, 5))
    np.testing.assert_allclose(path[0], a, atol=1e-6)
    np.testing.assert_allclose(path[-1], b, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(path, axis=1), 3.0, rtol=1e-6)


def test_translate_shows_input_output_and_round_trip(demo):
    info = demo.info("cyclegan_thick_mnist")
    a = demo.picks(info, "a")[0]
    b = demo.picks(info, "b")[0]
    assert (b >= a).all() and (b > a).any()  # B is A's dilation
    row = demo.translate(info, a)
    forward = demo.client.translate("cyclegan_thick_mnist", a[None])["images"]
    back = demo.client.translate("cyclegan_thick_mnist", forward, back=True)["images"]
    np.testing.assert_array_equal(row[2:30, 2:30], a)
    np.testing.assert_array_equal(row[2:30, 32:60], forward[0])
    np.testing.assert_array_equal(row[2:30, 62:90], back[0])


def test_uploads_become_the_signatures_shape(tmp_path):
    path = tmp_path / "big.png"
    Image.fromarray(np.full((56, 84, 3), 200, np.uint8)).save(path)
    assert demo_lib.to_model_image(str(path), (7, 7, 1)).shape == (7, 7, 1)
    assert demo_lib.to_model_image(np.zeros((112, 112), np.uint8), (28, 28, 1)).shape == (28, 28, 1)
    with pytest.raises(demo_lib.DemoError, match="choose or upload"):
        demo_lib.to_model_image(None, (28, 28, 1))


def test_card_pictures_are_served_by_the_page(demo):
    """The card's relative links and pictures become the page's links to the files themselves."""
    info = demo.info("vae_mnist")
    text = demo.card_markdown(info, lambda p: f"/files{p}")
    links = [link for _, link in re.findall(demo_lib._LINK, text)]
    assert all(link.startswith("/files/") for link in links)
    links = [link[len("/files"):] for link in links]
    assert links and all(pathlib.Path(p).is_file() for p in links)
    assert "](../" not in text


# ---------------------------------------------------------------- in a real browser
def _chromium():
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (found, driver) if found and driver else None


@pytest.fixture(scope="module")
def page(server, zoo_dir, tmp_path_factory):
    """``python -m serving.demo`` against the server, as a user starts it."""
    port = free_port()
    log = open(tmp_path_factory.mktemp("logs") / "demo.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "serving.demo", "--rest_url", f"http://127.0.0.1:{server.rest_port}",
         "--model_config_file", str(zoo_dir / "models.config"), "--port", str(port),
         "--max_rows", "5"],
        cwd=ROOT, env=dict(os.environ, GRADIO_ANALYTICS_ENABLED="False"), stdout=log,
        stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        assert proc.poll() is None, "the demo exited: " + pathlib.Path(log.name).read_text()[-2000:]
        try:
            if requests.get(url, timeout=2).status_code == 200:
                break
        except requests.ConnectionError:
            time.sleep(0.5)
    yield url
    proc.terminate()
    proc.wait(timeout=20)
    log.close()


@pytest.fixture(scope="module")
def browser():
    found = _chromium()
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs Chromium and chromedriver (.ci/run installs them)")
        pytest.skip("no Chromium/chromedriver here (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1400"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(found[1]), options=options)
    yield driver
    driver.quit()


def _wait(browser, condition, timeout=90):
    return WebDriverWait(browser, timeout).until(condition)


def _image_in(browser, elem_id):
    """The src of the image shown in the Gradio component ``elem_id``, once there is one."""
    def found(driver):
        images = driver.find_elements(By.CSS_SELECTOR, f"#{elem_id} img")
        return images[0].get_attribute("src") if images and images[0].get_attribute("src") else False
    return _wait(browser, found)


def _open(browser, page, model):
    browser.get(f"{page}/?model={model}")
    _wait(browser, lambda d: model in d.find_element(By.ID, "model-status").text)


def test_the_page_in_a_real_browser(browser, page, tmp_path):
    """Samples of a latent and an autoregressive model appear as images; a caption with a word
    outside the model's grammar shows the server's message."""
    for model in ("vae_mnist", "pixelcnn_mnist"):
        _open(browser, page, model)
        browser.find_element(By.ID, "sample-go").click()
        src = _image_in(browser, "sample-output")
        assert src.startswith(("http", "data:image")), src
        if model == "vae_mnist":
            card = browser.find_element(By.LINK_TEXT, "model card").get_attribute("href")
            assert requests.get(card, timeout=30).text.startswith("# vae_mnist")  # the page serves it
            shot = pathlib.Path(SCREENSHOT or tmp_path / "demo.png")
            shot.parent.mkdir(parents=True, exist_ok=True)
            assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000

    _open(browser, page, "text2image_mnist")
    caption = browser.find_element(By.CSS_SELECTOR, "#caption textarea")
    caption.clear()
    caption.send_keys("a banana")
    browser.find_element(By.ID, "sample-go").click()
    message = _wait(browser, lambda d: d.find_element(By.ID, "sample-status").text or False)
    assert "The server answered 400" in message and "banana" in message
    assert "Traceback" not in browser.page_source
