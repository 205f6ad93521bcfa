/* The demo channels' own JavaScript: hand the page's events to analytics.js (loaded from this server, never from a
   CDN), find stores near the shopper, and read a handoff QR code with the camera at the till. No inline script
   anywhere (the Content-Security-Policy forbids it); every page works without this file, tracking aside. */
"use strict";

function readData(id) {
  var node = document.getElementById(id);
  return node ? JSON.parse(node.textContent) : null;
}

/* Segment's snippet, written out: calls queue on window.analytics with the page they were made on, and the bundle
   replays them once loaded. The server gives the write key and the device's anonymous id; analytics.js keeps
   nothing in cookies or localStorage (disableClientPersistence), so the web shop and the app view in one browser
   stay two devices, as the server's cookies say. Events leave with keepalive, so following a link loses none. */
function startTracking() {
  var c = readData("tracking-config");
  if (!c || !c.on) return;
  var analytics = (window.analytics = []);
  analytics._writeKey = c.writeKey;
  analytics._cdn = c.cdn;
  analytics._loadOptions = {
    disableClientPersistence: true,
    useQueryString: false,
    integrations: { "Segment.io": { deliveryStrategy: { strategy: "standard", config: { keepalive: true } } } },
  };
  analytics.SNIPPET_VERSION = "5.2.1";
  ["page", "screen", "track", "identify", "ready"].forEach(function (method) {
    analytics[method] = function () {
      var args = Array.prototype.slice.call(arguments);
      if (method !== "ready") {
        args.push({ __t: "bpc", c: undefined, p: location.pathname, u: location.href, s: location.search,
                    t: document.title, r: document.referrer });
      }
      analytics.push([method].concat(args));
      return analytics;
    };
  });
  analytics.setAnonymousId = function (id) { analytics.push(["setAnonymousId", id]); return analytics; };
  analytics.setAnonymousId(c.anonymousId);
  if (c.identify) {
    var options = c.identify.externalIds ? { context: { externalIds: c.identify.externalIds } } : {};
    analytics.identify(c.identify.traits || {}, options);
  }
  if (c.screen) analytics.screen(c.category, c.name, c.properties || {});
  else analytics.page(c.category, c.name, c.properties || {});
  (c.events || []).forEach(function (e) { analytics.track(e[0], e[1]); });
  analytics.ready(function () { document.documentElement.setAttribute("data-tracking", "ready"); });
  var script = document.createElement("script");
  script.async = true;
  script.src = c.src;
  document.head.appendChild(script);
}

/* "Use my location": the browser's position, rounded to about a kilometre, orders the stores by distance; without
   it (refused, unavailable) the chosen store does, and the page says so. */
function setUpLocation() {
  var button = document.getElementById("locate");
  var status = document.getElementById("locate-status");
  if (!button || !status || !navigator.geolocation) return;
  button.hidden = false;
  button.addEventListener("click", function () {
    status.textContent = "Finding where you are…";
    navigator.geolocation.getCurrentPosition(function (pos) {
      var near = pos.coords.latitude.toFixed(2) + "," + pos.coords.longitude.toFixed(2);
      var url = new URL(location.href);
      url.searchParams.set("near", near);
      url.searchParams.set("sku", button.getAttribute("data-sku"));
      location.assign(url.toString());
    }, function () {
      status.textContent = "Your position is not available: choose your store instead.";
    }, { timeout: 8000, maximumAge: 600000 });
  });
}

/* The till's camera: BarcodeDetector where the browser has one; else each frame, in grey, is read by the server
   (POST /pos/scan, zxing-cpp). The code found goes into the form, which is sent. */
function setUpScanner() {
  var button = document.getElementById("scan");
  var box = document.getElementById("scanner");
  var video = document.getElementById("camera");
  var status = document.getElementById("scan-status");
  var stop = document.getElementById("scan-stop");
  var form = document.getElementById("pull-form");
  var tokenNode = document.querySelector('meta[name="csrf-token"]');
  if (!button || !box || !video || !form || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) return;
  button.hidden = false;
  var stream = null, timer = null, busy = false;
  var canvas = document.createElement("canvas");
  var detector = null;

  function end() {
    if (timer) clearInterval(timer);
    timer = null;
    if (stream) stream.getTracks().forEach(function (t) { t.stop(); });
    stream = null;
    box.hidden = true;
    button.hidden = false;
  }

  function found(text) {
    end();
    form.querySelector('input[name="code"]').value = text;
    status.textContent = "Read " + text;
    form.submit();
  }

  function viaServer() {
    var w = video.videoWidth, h = video.videoHeight;
    if (!w || !h || busy) return;
    var scale = Math.min(1, 640 / w);
    canvas.width = Math.round(w * scale);
    canvas.height = Math.round(h * scale);
    var ctx = canvas.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(video, 0, 0, canvas.width, canvas.height);
    var rgba = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    var grey = new Uint8Array(canvas.width * canvas.height);
    for (var i = 0, j = 0; j < grey.length; i += 4, j += 1) {
      grey[j] = (rgba[i] * 299 + rgba[i + 1] * 587 + rgba[i + 2] * 114) / 1000;
    }
    busy = true;
    fetch("/pos/scan", {
      method: "POST", credentials: "same-origin", body: grey,
      headers: { "Content-Type": "image/x-grey; width=" + canvas.width + "; height=" + canvas.height,
                 "X-CSRF-Token": tokenNode ? tokenNode.content : "" },
    }).then(function (r) { return r.ok ? r.json() : null; }).then(function (answer) {
      busy = false;
      if (answer && answer.text) found(answer.text);
    }, function () { busy = false; });
  }

  function viaDetector() {
    if (busy) return;
    busy = true;
    detector.detect(video).then(function (codes) {
      busy = false;
      if (codes.length) found(codes[0].rawValue);
    }, function () { busy = false; });
  }

  button.addEventListener("click", function () {
    status.textContent = "Starting the camera…";
    navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false }).then(function (s) {
      stream = s;
      video.srcObject = s;
      box.hidden = false;
      button.hidden = true;
      return video.play();
    }).then(function () {
      status.textContent = "Hold the QR code in front of the camera.";
      var start = function () { timer = setInterval(detector ? viaDetector : viaServer, 400); };
      if ("BarcodeDetector" in window) {
        window.BarcodeDetector.getSupportedFormats().then(function (formats) {
          if (formats.indexOf("qr_code") >= 0) detector = new window.BarcodeDetector({ formats: ["qr_code"] });
          start();
        }, start);
      } else {
        start();
      }
    }).catch(function () {
      end();
      status.textContent = "No camera here: type the code instead.";
    });
  });
  if (stop) stop.addEventListener("click", end);
}

startTracking();
document.addEventListener("DOMContentLoaded", function () {
  setUpLocation();
  setUpScanner();
});
