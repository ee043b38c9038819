// The ledger rows' outputs as the raw-pointer bindings take them (the host module's
// `pointers.ledger_rows` and the CUDA module's `ledger_rows`): a dict naming the float64 (N,)
// outputs wanted, each by its address, with the names of the LedgerRows fields. Shared so that
// both bindings read the same names and refuse the same misspelled ones.
#pragma once

#include <pybind11/pybind11.h>

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <string>

#include "thermossl/thermo.hpp"

namespace thermossl_bindings {

/// The LedgerRows whose fields are the addresses in `rows` (a field not named stays null: not
/// computed). A name that is not a LedgerRows field is a ValueError naming it.
inline thermossl::LedgerRows ledger_rows_from_addresses(const pybind11::dict& rows) {
    thermossl::LedgerRows out;
    double** fields[] = {&out.energy_q,  &out.energy_p,         &out.log_z, &out.entropy_q,
                         &out.entropy_p, &out.relative_entropy, &out.loss,  &out.label_mass};
    const char* names[] = {"energy_q",  "energy_p",         "log_z", "entropy_q",
                           "entropy_p", "relative_entropy", "loss",  "label_mass"};
    std::size_t found = 0;
    for (std::size_t i = 0; i < std::size(names); ++i) {
        if (!rows.contains(names[i])) continue;
        *fields[i] = reinterpret_cast<double*>(rows[names[i]].cast<std::uintptr_t>());
        ++found;
    }
    if (found != rows.size()) {
        for (auto item : rows) {
            const auto name = pybind11::str(item.first).cast<std::string>();
            bool known = false;
            for (const char* field : names) known = known || name == field;
            if (!known) throw pybind11::value_error("rows: unknown ledger field name '" + name + "'");
        }
    }
    return out;
}

}  // namespace thermossl_bindings
