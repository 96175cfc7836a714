// The message parts of the 活动 forms: variable buttons that insert {称呼} etc. at the
// cursor of their textarea, a small attachment list (image / link / miniprogram) that
// writes its hidden JSON input, the channel code's distribution choosing which of the
// guides / store fields shows, and a confirmation before "send now". The segment builder
// is tagging's rule_editor.js, bound to the same form.
(function () {
  "use strict";
  const specNode = document.getElementById("message-editor-spec");
  if (!specNode) return;
  const spec = JSON.parse(specNode.textContent);
  const text = spec.text;

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

  // -- variables ------------------------------------------------------------------------

  document.querySelectorAll(".variables[data-target]").forEach((box) => {
    const target = document.getElementById(box.dataset.target);
    if (!target) return;
    box.querySelectorAll("button[data-insert]").forEach((button) => {
      button.addEventListener("click", () => {
        const value = button.dataset.insert;
        const start = target.selectionStart ?? target.value.length;
        const end = target.selectionEnd ?? target.value.length;
        target.value = target.value.slice(0, start) + value + target.value.slice(end);
        target.focus();
        target.selectionStart = target.selectionEnd = start + value.length;
        target.dispatchEvent(new Event("input", { bubbles: true }));
      });
    });
  });

  // -- attachments ------------------------------------------------------------------------

  document.querySelectorAll(".attachments[data-attachments]").forEach((list) => {
    const hidden = document.getElementById(list.dataset.attachments);
    const add = document.querySelector('.add-attachment[data-for="' + list.dataset.attachments + '"]');
    if (!hidden) return;
    let items = [];
    try {
      items = JSON.parse(hidden.value || "[]");
    } catch (error) {
      items = [];
    }
    if (!Array.isArray(items)) items = [];

    function write() {
      hidden.value = JSON.stringify(items);
    }

    function render() {
      list.replaceChildren();
      if (!items.length) list.appendChild(element("p", { className: "muted small", text: text.none }));
      items.forEach((item, index) => {
        const row = element("div", { className: "attachment" });
        const type = element("select", { className: "attachment-type", "aria-label": text.type });
        spec.types.forEach(([code, label]) => {
          const option = element("option", { value: code, text: label });
          if (code === item.type) option.selected = true;
          type.appendChild(option);
        });
        type.addEventListener("change", () => {
          items[index] = { type: type.value };
          write();
          render();
        });
        row.appendChild(type);
        (spec.fields[item.type] || []).forEach((name) => {
          const needed = (spec.needs[item.type] || []).includes(name);
          const input = element("input", {
            type: "text",
            className: "attachment-" + name.replace("_", "-"),
            placeholder: spec.labels[name] + (needed ? " *" : ""),
            "aria-label": spec.labels[name],
          });
          input.value = item[name] || "";
          input.addEventListener("input", () => {
            item[name] = input.value;
            write();
          });
          row.appendChild(input);
        });
        const remove = element("button", { type: "button", className: "link remove", text: text.remove });
        remove.addEventListener("click", () => {
          items.splice(index, 1);
          write();
          render();
        });
        row.appendChild(remove);
        list.appendChild(row);
      });
    }

    if (add) {
      add.addEventListener("click", () => {
        items.push({ type: spec.types[0][0] });
        write();
        render();
      });
    }
    write();
    render();
  });

  // -- a channel code's distribution -----------------------------------------------------------

  const distribution = document.querySelector("select[name=distribution]");
  if (distribution) {
    const show = () => {
      document.querySelectorAll("[data-distribution]").forEach((box) => {
        const byStore = distribution.value === "by_store";
        box.hidden = (box.dataset.distribution === "by_store") !== byStore;
      });
    };
    distribution.addEventListener("change", show);
    show();
  }

  // -- confirm before sending --------------------------------------------------------------------

  document.querySelectorAll("button[data-confirm]").forEach((button) => {
    button.addEventListener("click", (event) => {
      if (!window.confirm(button.dataset.confirm)) event.preventDefault();
    });
  });
})();
