// The plan editor's steps: a timeline of step cards that writes the hidden `steps` input
// (JSON, parsed by sop.forms.PlanForm), with variable buttons that insert {称呼} etc. at
// the cursor, a small attachment list per step, and a preview of every script rendered
// for a sample customer (POSTed to the preview endpoint; nothing is saved). The trigger's
// parameters are shown for the chosen trigger only. The audience builder is tagging's
// rule_editor.js, bound to the same form.
(function () {
  "use strict";
  const form = document.getElementById("rule-form");
  const specNode = document.getElementById("plan-steps-spec");
  if (!form || !specNode) return;
  const spec = JSON.parse(specNode.textContent);
  const text = spec.text;
  const hidden = form.querySelector("input[name=steps]");
  const list = document.getElementById("steps");
  const addButton = document.getElementById("add-step");
  const previewButton = document.getElementById("script-preview");
  const search = document.getElementById("sample-search");
  const pick = document.getElementById("sample-pick");
  const statusLine = document.getElementById("script-preview-status");
  const csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;
  const FIELDS = {
    image: ["pic_url"],
    link: ["title", "url", "pic_url"],
    miniprogram: ["title", "appid", "page", "pic_url"],
  };
  const FIELD_TEXT = { title: text.title, url: text.url, pic_url: text.picUrl, appid: text.appid, page: text.page };

  let steps = [];
  try {
    steps = JSON.parse(hidden.value || "[]");
  } catch (error) {
    steps = [];
  }
  if (!Array.isArray(steps)) steps = [];
  let rendered = []; // the last preview, one text per step
  let previewed = false;

  // -- the trigger's parameters ---------------------------------------------------------

  const trigger = form.querySelector("select[name=trigger]");
  function showParams() {
    document.querySelectorAll(".trigger-param").forEach((box) => {
      box.hidden = box.dataset.trigger !== trigger.value;
    });
  }
  trigger.addEventListener("change", showParams);
  showParams();

  // -- building blocks --------------------------------------------------------------------

  function element(tag, attributes, children) {
    const node = document.createElement(tag);
    Object.entries(attributes || {}).forEach(([key, value]) => {
      if (key === "text") node.textContent = value;
      else if (key === "className") node.className = value;
      else node.setAttribute(key, value);
    });
    (children || []).forEach((child) => node.appendChild(child));
    return node;
  }

  function labelled(label, control) {
    return element("label", { className: "inline-field" }, [element("span", { text: label }), control]);
  }

  function input(type, value, onInput, attributes) {
    const box = element("input", Object.assign({ type: type }, attributes || {}));
    box.value = value === undefined || value === null ? "" : String(value);
    box.addEventListener("input", () => onInput(box.value));
    return box;
  }

  function select(choices, value, onChange, attributes) {
    const box = element("select", attributes);
    choices.forEach(([code, label]) => {
      const option = element("option", { value: code, text: label });
      if (code === value) option.selected = true;
      box.appendChild(option);
    });
    box.addEventListener("change", () => onChange(box.value));
    return box;
  }

  function button(label, className, onClick, disabled) {
    const node = element("button", { type: "button", className: className, text: label });
    if (disabled) node.disabled = true;
    node.addEventListener("click", onClick);
    return node;
  }

  function write() {
    hidden.value = JSON.stringify(steps);
  }

  // -- one step ---------------------------------------------------------------------------------

  function renderAttachments(step) {
    const box = element("div", { className: "attachments" });
    (step.attachments || []).forEach((item, index) => {
      const row = element("div", { className: "attachment" });
      row.appendChild(
        select(spec.attachment_types, item.type, (type) => {
          step.attachments[index] = { type: type };
          render();
        }, { className: "attachment-type", "aria-label": text.attachments })
      );
      FIELDS[item.type].forEach((name) => {
        row.appendChild(
          input("text", item[name], (value) => { item[name] = value; write(); }, {
            className: "attachment-" + name.replace("_", "-"),
            placeholder: FIELD_TEXT[name],
            "aria-label": FIELD_TEXT[name],
          })
        );
      });
      row.appendChild(button(text.remove, "link remove", () => {
        step.attachments.splice(index, 1);
        render();
      }));
      box.appendChild(row);
    });
    box.appendChild(button(text.addAttachment, "add-attachment", () => {
      step.attachments = step.attachments || [];
      step.attachments.push({ type: "image" });
      render();
    }));
    return box;
  }

  function renderStep(step, index) {
    const card = element("li", { className: "step" });
    const head = element("div", { className: "stephead" });
    head.appendChild(element("strong", { className: "stepnumber", text: text.step.replace("{n}", index + 1) }));
    head.appendChild(labelled(text.day, input("number", step.offset_days, (v) => {
      step.offset_days = v === "" ? 0 : parseInt(v, 10);
      write();
    }, { min: "0", step: "1", className: "offset-days", title: text.dayHint })));
    head.appendChild(labelled(text.hours, input("number", step.offset_hours, (v) => {
      step.offset_hours = v === "" ? 0 : parseInt(v, 10);
      write();
    }, { min: "0", step: "1", className: "offset-hours" })));
    const windowBox = element("span", { className: "inline-field" }, [element("span", { text: text.window })]);
    windowBox.appendChild(input("time", step.window_start, (v) => { step.window_start = v; write(); }, { className: "window-start", "aria-label": text.window }));
    windowBox.appendChild(element("span", { className: "muted", text: text.to }));
    windowBox.appendChild(input("time", step.window_end, (v) => { step.window_end = v; write(); }, { className: "window-end", "aria-label": text.window }));
    head.appendChild(windowBox);
    head.appendChild(labelled(text.action, select(spec.actions, step.action, (v) => { step.action = v; write(); }, { className: "action" })));
    const tools = element("span", { className: "steptools" });
    tools.appendChild(button(text.up, "link move-up", () => move(index, -1), index === 0));
    tools.appendChild(button(text.down, "link move-down", () => move(index, 1), index === steps.length - 1));
    tools.appendChild(button(text.remove, "link remove remove-step", () => {
      steps.splice(index, 1);
      rendered.splice(index, 1);
      render();
    }));
    head.appendChild(tools);
    card.appendChild(head);

    const script = element("textarea", { className: "script", rows: "3", "aria-label": text.script });
    script.value = step.script || "";
    script.addEventListener("input", () => {
      step.script = script.value;
      write();
      if (previewed) schedulePreview();
    });
    const variables = element("div", { className: "variables" }, [element("span", { className: "muted", text: text.variables })]);
    spec.variables.forEach(([name, meaning]) => {
      variables.appendChild(button(name, "variable", () => {
        script.focus();
        script.setRangeText(name, script.selectionStart, script.selectionEnd, "end");
        script.dispatchEvent(new Event("input"));
      })).title = meaning;
    });
    card.appendChild(labelled(text.script, script));
    card.appendChild(variables);
    card.appendChild(renderAttachments(step));
    const automatic = element("input", { type: "checkbox", className: "automatic" });
    automatic.checked = Boolean(step.is_automatic);
    automatic.addEventListener("change", () => { step.is_automatic = automatic.checked; write(); });
    card.appendChild(element("label", { className: "checkbox" }, [automatic, document.createTextNode(" " + text.automatic)]));
    const preview = element("div", { className: "rendered" });
    if (rendered[index] !== undefined) {
      preview.appendChild(element("span", { className: "muted", text: text.rendered }));
      preview.appendChild(element("p", { className: "rendered-text", text: rendered[index] || text.empty }));
    } else {
      preview.hidden = true;
    }
    card.appendChild(preview);
    return card;
  }

  function move(index, by) {
    const other = index + by;
    [steps[index], steps[other]] = [steps[other], steps[index]];
    [rendered[index], rendered[other]] = [rendered[other], rendered[index]];
    render();
  }

  function render() {
    if (steps.length) list.replaceChildren(...steps.map(renderStep));
    else list.replaceChildren(element("li", { className: "muted empty", text: text.noSteps }));
    addButton.disabled = steps.length >= spec.max_steps;
    write();
  }

  addButton.addEventListener("click", () => {
    const last = steps[steps.length - 1];
    const step = JSON.parse(JSON.stringify(spec.new_step));
    if (last) {
      step.offset_days = (parseInt(last.offset_days, 10) || 0) + 1;
      step.window_start = last.window_start;
      step.window_end = last.window_end;
    }
    steps.push(step);
    render();
  });

  // -- the script preview -------------------------------------------------------------------

  function condition() {
    const textarea = form.querySelector("textarea[name=condition]");
    try {
      return JSON.parse(textarea.value || "null");
    } catch (error) {
      return null;
    }
  }

  let timer = null;
  let sequence = 0;
  function schedulePreview() {
    clearTimeout(timer);
    timer = setTimeout(preview, 500);
  }

  function preview() {
    const mine = ++sequence;
    statusLine.textContent = text.previewing;
    statusLine.className = "muted";
    const body = { condition: condition(), scripts: steps.map((step) => step.script || "") };
    if (!pick.hidden && pick.value) body.customer = pick.value;
    else if (search.value.trim()) body.q = search.value.trim();
    fetch(spec.preview_url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrf },
      body: JSON.stringify(body),
    })
      .then((response) => response.json().then((data) => ({ ok: response.ok, data: data })))
      .then(({ ok, data }) => {
        if (mine !== sequence) return;
        if (!body.customer) showCandidates(data.candidates || []);
        if (!ok) {
          statusLine.textContent = data.error || text.failed;
          statusLine.className = "error";
          return;
        }
        previewed = true;
        rendered = data.scripts;
        statusLine.textContent = text.sample.replace("{customer}", data.customer.name).replace("{guide}", data.guide.name);
        statusLine.className = "sample";
        render();
      })
      .catch(() => {
        if (mine === sequence) {
          statusLine.textContent = text.failed;
          statusLine.className = "error";
        }
      });
  }

  function showCandidates(candidates) {
    pick.replaceChildren(...candidates.map((c) => element("option", { value: String(c.id), text: c.name + " (#" + c.id + ")" })));
    pick.hidden = candidates.length < 2;
  }

  previewButton.addEventListener("click", preview);
  search.addEventListener("input", () => { pick.hidden = true; pick.replaceChildren(); });
  search.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault(); // not a submit of the plan
      preview();
    }
  });
  pick.addEventListener("change", preview);

  render();
})();
