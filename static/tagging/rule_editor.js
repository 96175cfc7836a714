// The rule editor: a visual condition builder that writes the JSON textarea (and reads
// it back when the operator edits the JSON by hand), and a live audience preview: 400 ms
// after the last change the condition is posted to the preview API and the count and a
// sample (or the reason the condition cannot be evaluated) are shown.
(function () {
  "use strict";
  const form = document.getElementById("rule-form");
  if (!form) return;
  const spec = JSON.parse(document.getElementById("rule-spec").textContent);
  const text = JSON.parse(document.getElementById("rule-text").textContent);
  const textarea = form.querySelector("textarea[name=condition]");
  const builder = document.getElementById("builder");
  const note = document.getElementById("builder-note");
  const statusLine = document.getElementById("preview-status");
  const sampleTable = document.getElementById("preview-sample");
  const csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;
  const facts = {};
  spec.facts.forEach((fact) => { facts[fact.name] = fact; });

  const COMPARE = ["=", "!=", ">", ">=", "<", "<=", "between"].map((op) => [op, op]);
  const OPS = {
    number: COMPARE,
    date: COMPARE,
    share: COMPARE,
    set: [["any_of", text.anyOf], ["all_of", text.allOf], ["none_of", text.noneOf]],
    bool: [["is", "="]],
    tag: [["has", text.has], ["lacks", text.lacks]],
  };
  const SELECT_SETS = { channel: true, store: true }; // few values: a multiple select

  let root = { group: "all", negate: false, children: [] };
  let current = { all: [] }; // what is previewed: the builder's JSON or the hand-written one
  let visual = true;

  // -- the model: JSON <-> builder nodes ------------------------------------------------

  function NotVisual() {}

  function fromJson(condition) {
    if (!condition || typeof condition !== "object" || Array.isArray(condition)) {
      throw new NotVisual();
    }
    const keys = Object.keys(condition);
    if ("not" in condition) {
      if (keys.length !== 1) throw new NotVisual();
      const inner = fromJson(condition.not);
      if (inner.group && !inner.negate) {
        inner.negate = true;
        return inner;
      }
      return { group: "all", negate: true, children: [inner] };
    }
    for (const mode of ["all", "any"]) {
      if (mode in condition) {
        if (keys.length !== 1 || !Array.isArray(condition[mode])) throw new NotVisual();
        return { group: mode, negate: false, children: condition[mode].map(fromJson) };
      }
    }
    if (typeof condition.fact === "string" && facts[condition.fact]) {
      return Object.assign({}, condition);
    }
    throw new NotVisual();
  }

  function toJson(node) {
    if (node.group) {
      const core = { [node.group]: node.children.map(toJson) };
      return node.negate ? { not: core } : core;
    }
    const out = { fact: node.fact };
    if (facts[node.fact].kind === "share") {
      out.key = node.key || "";
      if (node.by && node.by !== "lines") out.by = node.by;
    }
    if (node.days !== undefined && node.days !== null && node.days !== "") out.days = node.days;
    out.op = node.op;
    out.value = node.value;
    return out;
  }

  function today() {
    // The brand's day (Asia/Shanghai), as the rules read dates; toISOString would give
    // the UTC date, a day behind from 00:00 to 08:00 in Shanghai.
    return new Date().toLocaleDateString("sv-SE", { timeZone: "Asia/Shanghai" });
  }

  function newLeaf(name) {
    const fact = facts[name];
    const options = spec.options[name] || [];
    switch (fact.kind) {
      case "number":
        return { fact: name, op: ">=", value: 1 };
      case "date":
        return { fact: name, op: ">=", value: today() };
      case "share":
        return { fact: name, key: (spec.suggestions[name] || [""])[0] || "", op: ">=", value: 0.5 };
      case "set":
        return { fact: name, op: "any_of", value: options.length ? [String(options[0][0])] : [] };
      case "bool":
        return { fact: name, op: "is", value: true };
      default:
        return { fact: name, op: "has", value: options.length ? options[0][0] : null };
    }
  }

  // -- rendering ----------------------------------------------------------------------------

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

  function select(choices, value, onChange, attributes) {
    const box = element("select", attributes);
    choices.forEach(([code, label]) => {
      const option = element("option", { value: String(code), text: label });
      if (String(code) === String(value)) option.selected = true;
      box.appendChild(option);
    });
    box.addEventListener("change", () => onChange(box.value, box));
    return box;
  }

  function numberValue(raw) {
    return raw === "" ? "" : Number(raw);
  }

  function valueInput(leaf, kind, index, onInput) {
    const type = kind === "date" ? "date" : "number";
    const value = index === null ? leaf.value : (leaf.value || [])[index];
    const input = element("input", {
      type: type,
      className: "value",
      "aria-label": facts[leaf.fact].label,
    });
    if (kind === "share") {
      input.step = "0.01";
      input.min = "0";
      input.max = "1";
    } else if (type === "number") {
      input.step = "any";
    }
    input.value = value === undefined || value === null ? "" : String(value);
    input.addEventListener("input", () => {
      const parsed = type === "number" ? numberValue(input.value) : input.value;
      if (index === null) leaf.value = parsed;
      else leaf.value[index] = parsed;
      onInput();
    });
    return input;
  }

  function renderLeaf(leaf, onRemove) {
    const fact = facts[leaf.fact];
    const row = element("div", { className: "leaf" });
    row.appendChild(
      select(
        spec.facts.map((f) => [f.name, f.label]),
        leaf.fact,
        (name) => {
          Object.keys(leaf).forEach((key) => delete leaf[key]);
          Object.assign(leaf, newLeaf(name));
          rebuild();
        },
        { className: "fact", "aria-label": text.fact || "fact" }
      )
    );
    if (fact.kind === "share") {
      const listId = "suggest-" + leaf.fact;
      const key = element("input", { type: "text", className: "key", placeholder: text.key, list: listId });
      key.value = leaf.key || "";
      key.addEventListener("input", () => { leaf.key = key.value; changed(); });
      row.appendChild(key);
      if (!document.getElementById(listId)) {
        const list = element("datalist", { id: listId });
        (spec.suggestions[leaf.fact] || []).forEach((v) => list.appendChild(element("option", { value: v })));
        document.body.appendChild(list);
      }
      row.appendChild(
        select([["lines", text.byLines], ["revenue", text.byRevenue]], leaf.by || "lines", (v) => {
          leaf.by = v;
          changed();
        })
      );
    }
    if (fact.windowed) {
      const days = element("input", {
        type: "number",
        min: "1",
        step: "1",
        className: "days",
        placeholder: text.allTime,
        title: text.lastDays,
        "aria-label": text.lastDays,
      });
      days.value = leaf.days === undefined ? "" : String(leaf.days);
      days.addEventListener("input", () => {
        if (days.value === "") delete leaf.days;
        else leaf.days = parseInt(days.value, 10);
        changed();
      });
      row.appendChild(element("span", { className: "muted", text: text.lastDays }));
      row.appendChild(days);
    }
    if (OPS[fact.kind].length === 1) {
      leaf.op = OPS[fact.kind][0][0];
      row.appendChild(element("span", { className: "fixed-op", text: OPS[fact.kind][0][1] }));
    } else {
      row.appendChild(
        select(OPS[fact.kind], leaf.op, (op) => {
          const wasBetween = leaf.op === "between";
          leaf.op = op;
          if (op === "between" && !wasBetween) leaf.value = [leaf.value, leaf.value];
          if (op !== "between" && wasBetween) leaf.value = (leaf.value || [""])[0];
          rebuild();
        }, { className: "op", "aria-label": "op" })
      );
    }
    appendValue(row, leaf, fact);
    row.appendChild(removeButton(onRemove));
    return row;
  }

  function appendValue(row, leaf, fact) {
    const options = spec.options[leaf.fact] || [];
    if (fact.kind === "bool") {
      row.appendChild(select([["true", text.yes], ["false", text.no]], String(leaf.value), (v) => {
        leaf.value = v === "true";
        changed();
      }));
    } else if (fact.kind === "tag") {
      row.appendChild(select(options, leaf.value, (v) => {
        leaf.value = parseInt(v, 10);
        changed();
      }, { className: "value" }));
    } else if (fact.kind === "set" && SELECT_SETS[leaf.fact]) {
      const box = element("select", { multiple: "multiple", size: "3", className: "value" });
      const chosen = (leaf.value || []).map(String);
      options.forEach(([code, label]) => {
        const option = element("option", { value: code, text: label === code ? code : label + " (" + code + ")" });
        option.selected = chosen.includes(String(code));
        box.appendChild(option);
      });
      box.addEventListener("change", () => {
        leaf.value = Array.from(box.selectedOptions).map((o) => o.value);
        changed();
      });
      row.appendChild(box);
    } else if (fact.kind === "set") {
      const listId = "suggest-" + leaf.fact;
      const input = element("input", { type: "text", className: "value", placeholder: text.commaList, list: listId });
      input.value = (leaf.value || []).join(", ");
      input.addEventListener("input", () => {
        leaf.value = input.value.split(/[,，、\s]+/).filter(Boolean);
        changed();
      });
      if (!document.getElementById(listId)) {
        const list = element("datalist", { id: listId });
        options.forEach(([code, label]) => list.appendChild(element("option", { value: code, label: label })));
        document.body.appendChild(list);
      }
      row.appendChild(input);
    } else if (leaf.op === "between") {
      if (!Array.isArray(leaf.value)) leaf.value = [leaf.value, leaf.value];
      row.appendChild(valueInput(leaf, fact.kind, 0, changed));
      row.appendChild(element("span", { className: "muted", text: text.and }));
      row.appendChild(valueInput(leaf, fact.kind, 1, changed));
    } else {
      row.appendChild(valueInput(leaf, fact.kind, null, changed));
    }
  }

  function removeButton(onRemove) {
    const button = element("button", { type: "button", className: "link remove", text: text.remove });
    button.addEventListener("click", onRemove);
    return button;
  }

  function renderGroup(node, onRemove) {
    const box = element("div", { className: "group" + (node.negate ? " negated" : "") });
    const head = element("div", { className: "grouphead" });
    head.appendChild(select([["all", text.all], ["any", text.any]], node.group, (v) => {
      node.group = v;
      changed();
    }, { className: "mode", "aria-label": text.all }));
    const negate = element("input", { type: "checkbox" });
    negate.checked = node.negate;
    negate.addEventListener("change", () => { node.negate = negate.checked; rebuild(); });
    head.appendChild(element("label", { className: "negate" }, [negate, document.createTextNode(" " + text.not)]));
    const addLeaf = element("button", { type: "button", className: "add-condition", text: text.addCondition });
    addLeaf.addEventListener("click", () => { node.children.push(newLeaf(spec.facts[0].name)); rebuild(); });
    const addGroup = element("button", { type: "button", className: "add-group", text: text.addGroup });
    addGroup.addEventListener("click", () => {
      node.children.push({ group: "any", negate: false, children: [newLeaf(spec.facts[0].name)] });
      rebuild();
    });
    head.appendChild(addLeaf);
    head.appendChild(addGroup);
    if (onRemove) head.appendChild(removeButton(onRemove));
    box.appendChild(head);
    const children = element("div", { className: "children" });
    node.children.forEach((child, index) => {
      const remove = () => { node.children.splice(index, 1); rebuild(); };
      children.appendChild(child.group ? renderGroup(child, remove) : renderLeaf(child, remove));
    });
    box.appendChild(children);
    return box;
  }

  function rebuild() {
    builder.replaceChildren(renderGroup(root, null));
    changed();
  }

  // -- keeping the JSON and the preview in step -------------------------------------------------

  function changed() {
    current = toJson(root);
    textarea.value = JSON.stringify(current, null, 2);
    schedulePreview();
  }

  function load(condition) {
    try {
      let node = fromJson(condition);
      if (!node.group) node = { group: "all", negate: false, children: [node] };
      root = node;
      visual = true;
      note.hidden = true;
      builder.replaceChildren(renderGroup(root, null));
    } catch (error) {
      if (!(error instanceof NotVisual)) throw error;
      visual = false;
      note.textContent = text.notVisual;
      note.hidden = false;
      builder.replaceChildren();
    }
  }

  let typing = null;
  textarea.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => {
      let condition;
      try {
        condition = JSON.parse(textarea.value);
      } catch (error) {
        clearTimeout(timer);
        showError(text.badJson + error.message);
        return;
      }
      load(condition);
      current = condition;
      schedulePreview();
    }, 400);
  });

  let timer = null;
  let sequence = 0;

  function schedulePreview() {
    clearTimeout(timer);
    timer = setTimeout(preview, 400);
  }

  function isEmpty(condition) {
    return condition && Array.isArray(condition.all) && condition.all.length === 0
      && Object.keys(condition).length === 1;
  }

  function preview() {
    const mine = ++sequence;
    if (isEmpty(current)) {
      statusLine.textContent = text.empty;
      statusLine.className = "muted";
      sampleTable.hidden = true;
      return;
    }
    statusLine.textContent = text.counting;
    statusLine.className = "muted";
    fetch(spec.preview_url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrf },
      body: JSON.stringify({ condition: current }),
    })
      .then((response) => response.json().then((body) => ({ ok: response.ok, body: body })))
      .then(({ ok, body }) => {
        if (mine !== sequence) return; // a later change is being counted
        if (ok) showSample(body);
        else showError((body.condition && body.condition[0]) || body.detail || text.failed);
      })
      .catch(() => { if (mine === sequence) showError(text.failed); });
  }

  function showError(reason) {
    statusLine.textContent = reason;
    statusLine.className = "error";
    sampleTable.hidden = true;
  }

  function showSample(body) {
    statusLine.textContent = text.matches.replace("{n}", body.audience.toLocaleString());
    statusLine.className = "audience";
    const rows = body.sample.map((customer) => {
      const link = element("a", { href: spec.customer_url.replace("{id}", customer.id), text: customer.name || "#" + customer.id });
      return element("tr", {}, [
        element("td", {}, [link]),
        element("td", { className: "num", text: String(customer.purchase_days) }),
        element("td", { className: "num", text: "¥" + customer.net_revenue }),
        element("td", { text: customer.last_purchase_on || "—" }),
      ]);
    });
    sampleTable.tBodies[0].replaceChildren(...rows);
    sampleTable.hidden = rows.length === 0;
  }

  let initial;
  try {
    initial = JSON.parse(textarea.value || '{"all": []}');
  } catch (error) {
    initial = null;
    showError(text.badJson + error.message);
  }
  if (initial !== null) {
    load(initial);
    current = initial;
    preview();
  }
})();
