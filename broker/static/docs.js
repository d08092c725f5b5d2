// Starts Swagger UI on /docs. A file of its own, not an inline script: the page's Content-Security-Policy
// allows scripts from spoc only ('self'), and every asset of the page is served by spoc (closed networks).
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
    layout: "BaseLayout",
  });
});
