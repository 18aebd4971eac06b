/* The Test connection button of this package's config-node dialogs (one copy for all of them). */
(function () {
    if (window.GlueworkConnectionTest) return;
    var SYMBOL = { passed: "\u2714", failed: "\u2718", skipped: "\u2013" };

    function fieldValue(key, fallback) {
        var input = $("#node-config-input-" + key);
        if (!input.length) return fallback;
        if (input.is(":checkbox")) return input.is(":checked");
        if (window.GlueworkSecretArea && input.is("textarea")) return GlueworkSecretArea.value(input);
        return input.val();
    }

    function collect(node) {
        var config = {};
        var credentials = {};
        Object.keys(node._def.defaults || {}).forEach(function (key) {
            var value = fieldValue(key, node[key]);
            if (value !== undefined && value !== null && typeof value !== "object") config[key] = value;
        });
        Object.keys(node._def.credentials || {}).forEach(function (key) {
            var value = fieldValue(key, undefined);
            if (typeof value === "string") credentials[key] = value;
        });
        return { config: config, credentials: credentials };
    }

    function show(list, report) {
        list.empty();
        (report.checks || []).forEach(function (line) {
            var item = $("<li>").addClass("gw-test-" + line.outcome).attr("data-check", line.check).attr("data-outcome", line.outcome);
            $("<span class=\"gw-test-mark\">").text(SYMBOL[line.outcome] || "?").appendTo(item);
            $("<b>").text(line.check + ": " + line.outcome).appendTo(item);
            if (line.detail) $("<span>").text(" \u2014 " + line.detail).appendTo(item);
            if (line.fix) $("<div class=\"gw-test-fix\">").text("Fix: " + line.fix).appendTo(item);
            list.append(item);
        });
    }

    /**
     * Adds the button to the open dialog of `node`. `extras` are fields of the test alone, never
     * saved: [{ name: "testAddress", label: "Test mailbox", placeholder: "someone@example.com" }].
     */
    function add(node, extras) {
        if (!document.getElementById("gw-connection-test-style")) {
            $("<style id=\"gw-connection-test-style\">").text(
                ".gw-test-result{list-style:none;margin:6px 0 0 0;padding:0}" +
                ".gw-test-result li{margin:3px 0;line-height:1.4}" +
                ".gw-test-mark{display:inline-block;width:1.3em}" +
                ".gw-test-passed .gw-test-mark{color:#2e7d32}.gw-test-failed .gw-test-mark{color:#c62828}.gw-test-skipped{color:#777}" +
                ".gw-test-fix{margin-left:1.3em;color:#555}"
            ).appendTo("head");
        }
        var form = $("#node-config-dialog-edit-form");
        var row = $("<div class=\"form-row gw-connection-test\">").appendTo(form);
        var inputs = {};
        (extras || []).forEach(function (extra) {
            var line = $("<div class=\"form-row\">").appendTo(row);
            $("<label>").attr("for", "gw-test-" + extra.name).text(extra.label).appendTo(line);
            inputs[extra.name] = $("<input type=\"text\">").attr("id", "gw-test-" + extra.name).attr("placeholder", extra.placeholder || "").appendTo(line);
        });
        var button = $("<button type=\"button\" class=\"red-ui-button gw-test-button\">").text("Test connection").appendTo(row);
        var state = $("<span class=\"gw-test-state\" style=\"margin-left:10px\">").appendTo(row);
        var list = $("<ul class=\"gw-test-result\">").appendTo(row);
        button.on("click", function () {
            var body = collect(node);
            body.id = node.id;
            body.options = {};
            Object.keys(inputs).forEach(function (name) { body.options[name] = inputs[name].val(); });
            button.prop("disabled", true);
            state.text("testing\u2026");
            list.empty();
            $.ajax({ url: "gluework/connection-test/" + encodeURIComponent(node.type), method: "POST", contentType: "application/json", data: JSON.stringify(body), timeout: 20000 })
                .done(function (report) {
                    state.text(report.ok ? "all checks passed" : "some checks failed").attr("data-ok", String(report.ok));
                    show(list, report);
                })
                .fail(function (xhr) {
                    state.text("the test could not run: " + ((xhr.responseJSON && xhr.responseJSON.error) || xhr.statusText || "no answer"));
                })
                .always(function () { button.prop("disabled", false); });
        });
    }

    window.GlueworkConnectionTest = { add: add };
})();
