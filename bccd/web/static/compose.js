/* bccd Mail page: the compose form made richer (SPEC §12). Plain forms work without it.
 *
 * - textarea[data-editor]: becomes a Squire editor (vendor/squire-*.js, with DOMPurify
 *   sanitizing what is pasted) with a toolbar — bold, italic, lists, links, images (by
 *   paste or upload, kept as data: URIs; the server turns them into inline parts). On
 *   submit the HTML goes to the field named by data-editor; a plain-text textarea is
 *   then left out of the form.
 * - input[data-suggest]: the company's persons suggested as one types (GET
 *   /mail/compose/people?q=), inserted as "Name <address>, ".
 * - select[data-template]: fills subject and body at once (POST /mail/compose/render).
 * - input[type=file][data-max-size]: lists the files with their sizes and refuses to
 *   submit while they are over the limit — before anything is uploaded.
 */
(function () {
  "use strict";

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text) { e.textContent = text; }
    return e;
  }

  function size(n) {
    if (n < 1024) { return n + " B"; }
    if (n < 1024 * 1024) { return (n / 1024).toFixed(1) + " KB"; }
    return (n / 1024 / 1024).toFixed(1) + " MB";
  }

  function escapeText(text) {
    var div = document.createElement("div");
    div.textContent = text;
    return div.innerHTML.replace(/\r?\n/g, "<br>");
  }

  function readImage(file, editor) {
    if (!/^image\/(png|jpeg|gif|webp)$/.test(file.type)) { return; }
    var reader = new FileReader();
    reader.onload = function () { editor.insertImage(reader.result, { alt: file.name || "image" }); };
    reader.readAsDataURL(file);
  }

  // ------------------------------------------------------------------ the editor
  function makeEditor(area) {
    if (typeof window.Squire !== "function") { return null; }
    var box = el("div", { "class": "editor-box" });
    var bar = el("div", { "class": "toolbar", role: "toolbar", "aria-label": "Formatting" });
    var root = el("div", { "class": "editor", id: area.id + "-editor", role: "textbox",
                           "aria-multiline": "true", "aria-label": area.getAttribute("aria-label") || "Message" });
    var picker = el("input", { type: "file", accept: "image/png,image/jpeg,image/gif,image/webp",
                               hidden: "", "data-role": "image-file" });
    area.parentNode.insertBefore(box, area);
    box.appendChild(bar);
    box.appendChild(root);
    box.appendChild(picker);
    area.hidden = true;
    var editor = new window.Squire(root, { blockTag: "DIV" });
    var initial = area.getAttribute("data-html");
    editor.setHTML(initial ? initial : (area.value ? escapeText(area.value) : ""));

    function button(name, label, title, action) {
      var b = el("button", { type: "button", "class": "tool", "data-action": name, title: title,
                             "aria-label": title }, label);
      b.addEventListener("click", function (ev) { ev.preventDefault(); action(); editor.focus(); });
      bar.appendChild(b);
    }
    button("bold", "B", "Bold", function () {
      if (editor.hasFormat("B")) { editor.removeBold(); } else { editor.bold(); }
    });
    button("italic", "I", "Italic", function () {
      if (editor.hasFormat("I")) { editor.removeItalic(); } else { editor.italic(); }
    });
    button("ul", "• List", "Bulleted list", function () {
      if (editor.hasFormat("UL")) { editor.removeList(); } else { editor.makeUnorderedList(); }
    });
    button("ol", "1. List", "Numbered list", function () {
      if (editor.hasFormat("OL")) { editor.removeList(); } else { editor.makeOrderedList(); }
    });
    button("link", "Link", "Link", function () {
      if (editor.hasFormat("A")) { editor.removeLink(); return; }
      var url = window.prompt("Link address (https://…)", "https://");
      if (url && /^(https?:\/\/|mailto:)/i.test(url)) { editor.makeLink(url); }
    });
    button("image", "Image", "Insert an image", function () { picker.click(); });
    picker.addEventListener("change", function () {
      Array.prototype.forEach.call(picker.files, function (f) { readImage(f, editor); });
      picker.value = "";
    });
    editor.addEventListener("pasteImage", function (ev) {
      var items = ev.detail.clipboardData.items;
      Array.prototype.forEach.call(items, function (item) {
        if (/^image\//.test(item.type)) { readImage(item.getAsFile(), editor); }
      });
    });
    var form = area.form;
    var target = form.elements.namedItem(area.getAttribute("data-editor"));
    form.addEventListener("submit", function () {
      if (target && target !== area) {
        target.value = editor.getHTML();
        area.disabled = true;           // the plain text is not sent beside the HTML
      } else {
        area.value = editor.getHTML();  // the textarea itself holds HTML (signature)
      }
    });
    area.bccdEditor = editor;
    return editor;
  }

  // ------------------------------------------------------------------ suggestions
  function suggest(input) {
    var list = el("ul", { "class": "suggestions", role: "listbox", id: input.id + "-suggestions" });
    list.hidden = true;
    input.setAttribute("aria-controls", list.id);
    input.setAttribute("autocomplete", "off");
    input.parentNode.insertBefore(list, input.nextSibling);
    var timer = null;
    var seq = 0;

    function current() {
      var parts = input.value.split(",");
      return parts[parts.length - 1].trim();
    }

    function choose(person) {
      var parts = input.value.split(",");
      parts[parts.length - 1] = " " + (person.name ? person.name.replace(/[",<>]/g, "") + " <" + person.email + ">"
                                                   : person.email);
      input.value = parts.join(",").replace(/^\s+/, "") + ", ";
      list.hidden = true;
      input.focus();
    }

    function show(found) {
      list.textContent = "";
      list.people = found;
      found.forEach(function (person, i) {
        var item = el("li", { role: "option", "data-email": person.email, id: list.id + "-" + i },
                      person.name ? person.name + " <" + person.email + ">" : person.email);
        item.addEventListener("mousedown", function (ev) { ev.preventDefault(); choose(person); });
        list.appendChild(item);
      });
      list.hidden = found.length === 0;
    }

    input.addEventListener("input", function () {
      var q = current();
      clearTimeout(timer);
      if (q.length < 1) { list.hidden = true; return; }
      timer = setTimeout(function () {
        var mine = ++seq;
        fetch("/mail/compose/people?q=" + encodeURIComponent(q), { credentials: "same-origin" })
          .then(function (r) { return r.ok ? r.json() : []; })
          .then(function (found) { if (mine === seq) { show(found); } })
          .catch(function () { list.hidden = true; });
      }, 120);
    });
    input.addEventListener("keydown", function (ev) {
      if (list.hidden) { return; }
      if ((ev.key === "Enter" || ev.key === "Tab") && list.people && list.people.length) {
        ev.preventDefault();
        choose(list.people[0]);
      } else if (ev.key === "Escape") {
        list.hidden = true;
      }
    });
    input.addEventListener("blur", function () { setTimeout(function () { list.hidden = true; }, 150); });
  }

  // ------------------------------------------------------------------ templates
  function templates(select) {
    var form = select.form;
    var status = document.getElementById("template-error");
    var apply = form.querySelector("button[name=apply_template]");
    if (apply) { apply.hidden = true; }
    select.addEventListener("change", function () {
      if (!select.value) { return; }
      var data = new FormData();
      ["csrf", "reply_to", "forward_of", "entity"].forEach(function (name) {
        var field = form.elements.namedItem(name);
        if (field) { data.append(name, field.value); }
      });
      data.append("template_id", select.value);
      fetch("/mail/compose/render", { method: "POST", body: data, credentials: "same-origin" })
        .then(function (r) { return r.json().then(function (body) { return { ok: r.ok, body: body }; }); })
        .then(function (res) {
          if (!res.ok) { status.textContent = res.body.error || "The template could not be used."; return; }
          status.textContent = "";
          var subject = form.elements.namedItem("subject");
          if (res.body.subject && subject && (!subject.value || subject.getAttribute("data-from-template"))) {
            subject.value = res.body.subject;
            subject.setAttribute("data-from-template", "1");
          }
          var area = document.getElementById("body");
          if (area && area.bccdEditor) { area.bccdEditor.setHTML(res.body.html); } else if (area) { area.value = res.body.text; }
        })
        .catch(function () { status.textContent = "The template could not be loaded."; });
    });
  }

  // ------------------------------------------------------------------ attachments
  function attachments(input) {
    var max = parseInt(input.getAttribute("data-max-size"), 10);
    var list = document.getElementById("attachment-list");
    var error = document.getElementById("attachments-error");
    var send = input.form.querySelector("button[type=submit]:not([name])");

    function check() {
      var total = 0;
      list.textContent = "";
      Array.prototype.forEach.call(input.files, function (f) {
        total += f.size;
        list.appendChild(el("li", {}, f.name + " — " + size(f.size)));
      });
      var over = total > max;
      error.textContent = over ? "The attachments come to " + size(total) + "; the limit is " +
                                 size(max) + ". Remove some before sending." : "";
      input.setAttribute("aria-invalid", over ? "true" : "false");
      if (send) { send.disabled = over; }
      return !over;
    }
    input.addEventListener("change", check);
    input.form.addEventListener("submit", function (ev) { if (!check()) { ev.preventDefault(); } });
  }

  function sending(form) {
    form.addEventListener("submit", function (ev) {
      if (ev.defaultPrevented) { return; }
      var send = form.querySelector("button[type=submit]:not([name])");
      if (send) { send.disabled = true; send.textContent = "Sending…"; }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("textarea[data-editor]").forEach(makeEditor);
    document.querySelectorAll("input[data-suggest]").forEach(suggest);
    document.querySelectorAll("select[data-template]").forEach(templates);
    document.querySelectorAll("input[type=file][data-max-size]").forEach(attachments);
    document.querySelectorAll("form[data-compose]").forEach(sending);
  });
}());
