// The list's export and tagging act on the filters the list is shown with: while the
// filter form holds changes not applied yet, they wait for 筛选. Tagging asks first,
// naming the tag and how many customers get it.
(function () {
  const filters = document.querySelector("form.filters[method=get]");
  const actions = document.querySelectorAll("[data-applied-filters] button");
  const pending = document.getElementById("filters-pending");
  if (filters && actions.length) {
    const hold = function () {
      actions.forEach((button) => (button.disabled = true));
      pending.hidden = false;
    };
    filters.addEventListener("input", hold);
    filters.addEventListener("change", hold);
  }
  const tagging = document.getElementById("listed-tag");
  if (!tagging) return;
  tagging.addEventListener("submit", function (event) {
    const select = tagging.querySelector("select[name=tag]");
    const label = select.options[select.selectedIndex].text;
    if (!window.confirm(tagging.dataset.confirm.replace("%(tag)s", label))) {
      event.preventDefault();
    }
  });
})();
