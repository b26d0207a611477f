/*
 * Consent banner for the consent and data-governance service. No dependencies.
 *
 *   <script src="https://consent.example.com/banner.js" data-key="pk_..." defer></script>
 *
 * Optional attributes: data-api (the service's base URL; default: where this script came
 * from), data-lang (default: <html lang>, then the browser's language), data-subject-token
 * (a token your back end minted for a logged-in person).
 *
 * It reads the property's configuration, shows the banner when the service says this person
 * must be asked (never asked, a material notice change, an expired grant), posts the choice,
 * and keeps the device id the service issued in this site's own localStorage. A "Privacy
 * choices" button reopens it: withdrawing ("Reject all") takes one click, like granting.
 * Events: "consentgovernance:ready" and "consentgovernance:change" on document.
 */
(function () {
  "use strict";

  var script = document.currentScript;
  if (!script) {
    return;
  }
  var STORAGE_KEY = "consentgovernance.device_id";
  var settings = {
    key: script.getAttribute("data-key") || "",
    api: (script.getAttribute("data-api") || new URL(script.src).origin).replace(/\/+$/, ""),
    lang:
      script.getAttribute("data-lang") ||
      document.documentElement.lang ||
      navigator.language ||
      "",
    token: script.getAttribute("data-subject-token") || null,
  };
  var state = { config: null, deviceId: null, root: null, reopen: null, busy: false };

  function storedDeviceId() {
    try {
      return window.localStorage.getItem(STORAGE_KEY);
    } catch (e) {
      return null;
    }
  }

  function rememberDeviceId(id) {
    if (!id) {
      return;
    }
    state.deviceId = id;
    try {
      window.localStorage.setItem(STORAGE_KEY, id);
    } catch (e) {
      /* storage disabled: the choice is still recorded, the banner may ask again */
    }
  }

  function newKey() {
    if (window.crypto && window.crypto.randomUUID) {
      return window.crypto.randomUUID();
    }
    return String(Date.now()) + "-" + String(Math.random()).slice(2);
  }

  function call(method, path, body, extraHeaders) {
    var headers = { Authorization: "Bearer " + settings.key, Accept: "application/json" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
    }
    Object.keys(extraHeaders || {}).forEach(function (name) {
      if (extraHeaders[name]) {
        headers[name] = extraHeaders[name];
      }
    });
    return fetch(settings.api + path, {
      method: method,
      mode: "cors",
      credentials: "omit",
      headers: headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    }).then(function (response) {
      return response.json().then(function (data) {
        if (!response.ok) {
          var error = new Error((data && data.error && data.error.message) || "Request failed");
          error.body = data;
          throw error;
        }
        return data;
      });
    });
  }

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) {
      node.setAttribute(name, attrs[name]);
    });
    if (text !== undefined) {
      node.textContent = text;
    }
    return node;
  }

  function injectStyle() {
    if (document.getElementById("cg-style")) {
      return;
    }
    var css =
      "#cg-banner{position:fixed;left:1rem;right:1rem;bottom:1rem;z-index:2147483000;" +
      "max-width:44rem;margin:0 auto;background:#fff;color:#111;border:2px solid #111;" +
      "border-radius:.5rem;padding:1rem 1.25rem;font:16px/1.45 system-ui,sans-serif;" +
      "box-shadow:0 .5rem 2rem rgba(0,0,0,.25)}" +
      "#cg-banner h2{font-size:1.2rem;margin:0 0 .5rem}" +
      "#cg-banner p{margin:0 0 .75rem}" +
      ".cg-actions{display:flex;flex-wrap:wrap;gap:.5rem}" +
      ".cg-btn{flex:1 1 10rem;font:inherit;font-weight:600;padding:.6rem 1rem;" +
      "border:2px solid #111;border-radius:.35rem;background:#111;color:#fff;cursor:pointer}" +
      ".cg-btn:focus-visible,#cg-reopen:focus-visible,.cg-purpose input:focus-visible" +
      "{outline:3px solid #1a5fd0;outline-offset:2px}" +
      ".cg-purposes{border:0;margin:0 0 .75rem;padding:0}" +
      ".cg-purposes legend{font-weight:600;margin-bottom:.25rem}" +
      ".cg-purpose{display:flex;gap:.6rem;align-items:flex-start;padding:.35rem 0}" +
      ".cg-purpose input{width:1.25rem;height:1.25rem;margin-top:.15rem}" +
      ".cg-purpose small{display:block;color:#333}" +
      ".cg-status{min-height:1.2em;margin:.5rem 0 0;font-size:.9rem}" +
      "#cg-reopen{position:fixed;left:1rem;bottom:1rem;z-index:2147482999;font:600 14px " +
      "system-ui,sans-serif;padding:.45rem .8rem;border:2px solid #111;border-radius:.35rem;" +
      "background:#fff;color:#111;cursor:pointer}";
    var style = el("style", { id: "cg-style" });
    style.textContent = css;
    document.head.appendChild(style);
  }

  function consentPurposes() {
    return state.config.purposes.filter(function (p) {
      return p.legal_basis === "consent";
    });
  }

  function askedAgain(key) {
    return state.config.reasons.some(function (r) {
      return r.purpose === key;
    });
  }

  function gpcHolds(purpose) {
    return state.config.gpc && purpose.gpc_opt_out;
  }

  function render() {
    var config = state.config;
    var texts = config.texts;
    var root = el("div", {
      id: "cg-banner",
      role: "dialog",
      "aria-modal": "false",
      "aria-labelledby": "cg-title",
      "aria-describedby": "cg-description",
      lang: config.language,
    });
    root.hidden = true;
    root.appendChild(el("h2", { id: "cg-title", tabindex: "-1" }, texts.title));
    root.appendChild(el("p", { id: "cg-description" }, texts.description));

    var fieldset = el("fieldset", { id: "cg-purposes", class: "cg-purposes" });
    fieldset.hidden = true;
    fieldset.appendChild(el("legend", {}, texts.customise));
    config.purposes.forEach(function (purpose) {
      var row = el("div", { class: "cg-purpose" });
      var id = "cg-purpose-" + purpose.key;
      var box = el("input", { type: "checkbox", id: id, name: purpose.key });
      box.setAttribute("data-cg-purpose", purpose.key);
      var label = el("label", { for: id });
      label.appendChild(el("strong", {}, purpose.title));
      var note = purpose.description;
      if (purpose.legal_basis !== "consent") {
        box.checked = true;
        box.disabled = true;
        box.removeAttribute("data-cg-purpose");
        note += " (" + purpose.legal_basis.replace(/_/g, " ") + ")";
      } else if (gpcHolds(purpose)) {
        box.disabled = true;
        note += " (turned off by your browser's Global Privacy Control signal)";
      }
      label.appendChild(el("small", {}, note));
      row.appendChild(box);
      row.appendChild(label);
      fieldset.appendChild(row);
    });
    root.appendChild(fieldset);

    var actions = el("div", { class: "cg-actions" });
    // Reject all and accept all: same element, same style, side by side.
    [
      ["reject-all", texts.reject_all],
      ["accept-all", texts.accept_all],
      ["customise", texts.customise],
      ["save", texts.save],
    ].forEach(function (pair) {
      var button = el("button", { type: "button", class: "cg-btn" }, pair[1]);
      button.setAttribute("data-cg-action", pair[0]);
      if (pair[0] === "customise") {
        button.setAttribute("aria-expanded", "false");
        button.setAttribute("aria-controls", "cg-purposes");
      }
      if (pair[0] === "save") {
        button.hidden = true;
      }
      actions.appendChild(button);
    });
    root.appendChild(actions);
    root.appendChild(el("p", { class: "cg-status", role: "status", "aria-live": "polite" }));
    root.addEventListener("click", onClick);

    var reopen = el("button", { id: "cg-reopen", type: "button" }, texts.title);
    reopen.setAttribute("data-cg-action", "reopen");
    reopen.setAttribute("aria-haspopup", "dialog");
    reopen.addEventListener("click", function () {
      open(true);
    });

    if (state.root) {
      state.root.remove();
    }
    if (state.reopen) {
      state.reopen.remove();
    }
    document.body.appendChild(reopen);
    document.body.appendChild(root);
    state.root = root;
    state.reopen = reopen;
  }

  function setChecks(showCurrent) {
    consentPurposes().forEach(function (purpose) {
      var box = document.getElementById("cg-purpose-" + purpose.key);
      // Never pre-ticked: a box shows a grant only when reopening a standing choice.
      box.checked =
        showCurrent && purpose.status === "granted" && !askedAgain(purpose.key) && !gpcHolds(purpose);
    });
  }

  function customise(show) {
    var fieldset = document.getElementById("cg-purposes");
    fieldset.hidden = !show;
    state.root.querySelector('[data-cg-action="customise"]').setAttribute(
      "aria-expanded",
      show ? "true" : "false"
    );
    state.root.querySelector('[data-cg-action="save"]').hidden = !show;
    if (show) {
      var first = fieldset.querySelector("input:not([disabled])");
      if (first) {
        first.focus();
      }
    }
  }

  function open(reopening) {
    setChecks(Boolean(reopening));
    customise(Boolean(reopening));
    status("");
    state.root.hidden = false;
    state.reopen.hidden = true;
    state.root.querySelector("#cg-title").focus();
  }

  function close() {
    state.root.hidden = true;
    state.reopen.hidden = false;
    state.reopen.focus();
  }

  function status(text) {
    state.root.querySelector(".cg-status").textContent = text;
  }

  function onClick(event) {
    var action = event.target.getAttribute && event.target.getAttribute("data-cg-action");
    if (!action || state.busy) {
      return;
    }
    if (action === "customise") {
      var fieldset = document.getElementById("cg-purposes");
      customise(fieldset.hidden);
      return;
    }
    var decisions = consentPurposes().map(function (purpose) {
      var granted = action === "accept-all";
      if (action === "save") {
        granted = document.getElementById("cg-purpose-" + purpose.key).checked;
      }
      return { purpose: purpose.key, granted: granted, notice_version: purpose.notice_version };
    });
    record(decisions, action === "save" ? "checkbox" : "button").then(close, function (error) {
      status(error.message || "Your choice could not be saved. Please try again.");
    });
  }

  function record(decisions, method) {
    state.busy = true;
    var body = {
      device_id: state.deviceId,
      subject_token: settings.token,
      decisions: decisions,
      indication_method: method,
      context: { locale: settings.lang.slice(0, 16), page: location.origin + location.pathname },
    };
    return call("POST", "/api/v1/banner/consents", body, { "Idempotency-Key": newKey() })
      .then(function (result) {
        rememberDeviceId(result.device_id);
        var byKey = {};
        result.events.forEach(function (event) {
          byKey[event.purpose] = event;
        });
        state.config.purposes.forEach(function (purpose) {
          if (byKey[purpose.key]) {
            purpose.status = byKey[purpose.key].action;
            purpose.status_source = byKey[purpose.key].source === "gpc" ? "gpc" : null;
          }
        });
        if (decisions.length) {
          state.config.reasons = [];
          state.config.ask = false;
        }
        state.config.gpc_pending = false;
        document.documentElement.setAttribute("data-cg-saved", String(Date.now()));
        document.dispatchEvent(
          new CustomEvent("consentgovernance:change", { detail: { consents: consents(), result: result } })
        );
        return result;
      })
      .finally(function () {
        state.busy = false;
      });
  }

  function consents() {
    var out = {};
    (state.config ? state.config.purposes : []).forEach(function (purpose) {
      out[purpose.key] = purpose.status;
    });
    return out;
  }

  function loadConfig() {
    var query = settings.lang ? "?lang=" + encodeURIComponent(settings.lang.slice(0, 35)) : "";
    return call("GET", "/api/v1/banner/config" + query, undefined, {
      "X-Device-Id": state.deviceId,
      "X-Subject-Token": settings.token,
    }).catch(function (error) {
      var code = error.body && error.body.error && error.body.error.code;
      if (code === "invalid_device_id" && state.deviceId) {
        // Not issued by this service (or its signing key changed): start a new device id.
        state.deviceId = null;
        try {
          window.localStorage.removeItem(STORAGE_KEY);
        } catch (e) {
          /* storage disabled */
        }
        return loadConfig();
      }
      if (code === "unknown_language" && query) {
        settings.lang = "";
        return call("GET", "/api/v1/banner/config", undefined, {
          "X-Device-Id": state.deviceId,
          "X-Subject-Token": settings.token,
        });
      }
      throw error;
    });
  }

  function start() {
    state.deviceId = storedDeviceId();
    var linked =
      settings.token && state.deviceId
        ? call("POST", "/api/v1/banner/link", {
            device_id: state.deviceId,
            subject_token: settings.token,
          }).catch(function () {
            return null;
          })
        : Promise.resolve(null);
    return linked
      .then(loadConfig)
      .then(function (config) {
        state.config = config;
        if (!state.deviceId) {
          rememberDeviceId(config.device_id);
        }
        injectStyle();
        render();
        // GPC asks for nothing more: its opt-outs are recorded without showing anything.
        var mustAsk = config.ask;
        var gpc = config.gpc_pending ? record([], "button") : Promise.resolve(null);
        return gpc.then(function () {
          if (mustAsk) {
            open(false);
          }
          document.documentElement.setAttribute("data-cg-ready", "true");
          document.dispatchEvent(
            new CustomEvent("consentgovernance:ready", { detail: { consents: consents() } })
          );
        });
      })
      .catch(function (error) {
        document.documentElement.setAttribute("data-cg-error", error.message || "error");
        if (window.console) {
          window.console.warn("consent banner:", error.message || error);
        }
      });
  }

  window.ConsentGovernance = {
    open: function () {
      open(true);
    },
    consents: consents,
    setSubjectToken: function (token) {
      settings.token = token || null;
      return start();
    },
  };

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
