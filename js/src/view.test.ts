import { afterEach, describe, expect, it } from "vitest";
import { liveBuses } from "./bus";
import { FakeModel } from "./test_helpers";
import { initializeModel, mountView, NOTICE_CLASS, type ViewDefinition } from "./view";

type State = {
  _view: string;
  link_id: string;
  data: number;
  pick: number;
};

afterEach(() => {
  document.body.replaceChildren();
});

function definition(log: string[]): ViewDefinition<State> {
  return {
    className: "fs-test",
    rebuildOn: ["data"],
    listen: ["pick"],
    create({ model, root, width }) {
      log.push(`create ${model.get("data")} ${width}`);
      root.append(document.createElement("p"));
      return {
        resize: (w) => log.push(`resize ${w}`),
        changed: (key) => log.push(`changed ${key} ${model.get(key as keyof State)}`),
        destroy: () => log.push("destroy"),
      };
    },
  };
}

describe("mountView", () => {
  it("builds under a scoped root, rebuilds on data, updates in place, and cleans up", () => {
    const model = new FakeModel<State>({ _view: "t", link_id: "L1", data: 1, pick: 0 });
    const el = document.createElement("div");
    const log: string[] = [];
    const cleanup = mountView(definition(log), { model, el });
    const root = el.querySelector(".filterscope.fs-test") as HTMLElement;
    expect(root.querySelectorAll("p")).toHaveLength(1);
    model.set("pick", 3);
    model.set("data", 2);
    expect(root.querySelectorAll("p")).toHaveLength(1); // emptied before the rebuild
    expect(log).toEqual(["create 1 760", "changed pick 3", "destroy", "create 2 760"]);
    expect(liveBuses()).toContain("L1");
    cleanup();
    expect(log.at(-1)).toBe("destroy");
    expect(el.children).toHaveLength(0);
    expect(model.listenerCount()).toBe(0);
    expect(liveBuses()).not.toContain("L1");
  });

  it("uses the request client `initialize` made for the model, and leaves it to it", () => {
    const model = new FakeModel<State>({ _view: "t", link_id: "", data: 1, pick: 0 });
    const done = initializeModel<State>(model);
    expect(model.listenerCount()).toBe(1);
    const cleanup = mountView(definition([]), { model, el: document.createElement("div") });
    expect(model.listenerCount()).toBe(4); // the client's, plus notice, data and pick
    cleanup();
    expect(model.listenerCount()).toBe(1);
    done();
    expect(model.listenerCount()).toBe(0);
  });

  it("shows the kernel's notice above the view, as text, and hides it when empty", () => {
    type Noticed = State & { notice: string };
    const model = new FakeModel<Noticed>({ _view: "t", link_id: "", data: 1, pick: 0, notice: "" });
    const el = document.createElement("div");
    const cleanup = mountView(definition([]) as unknown as ViewDefinition<Noticed>, { model, el });
    const notice = el.querySelector(`.${NOTICE_CLASS}`) as HTMLElement;
    expect(notice.hidden).toBe(true);
    expect(el.firstElementChild).toBe(notice);
    const text = "replaced by another run <img src=x onerror=alert(1)>";
    model.set("notice", text);
    expect(notice.hidden).toBe(false);
    expect(notice.textContent).toBe(text);
    expect(notice.querySelector("img")).toBeNull();
    model.set("notice", "");
    expect(notice.hidden).toBe(true);
    cleanup();
    expect(el.children).toHaveLength(0);
  });
});
